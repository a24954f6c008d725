package io.vfioproxy.cli;

import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The device a one-shot command opens in this process, and the configuration file that may name it. */
final class LocalDeviceOptions {

    @Option(names = "--device", required = true,
            description = "a device of the configuration file, or a cdev path, a PCI address or an mdev UUID")
    String device;

    @Option(names = "--config", defaultValue = "conf/agent.json", description = "configuration file (${DEFAULT-VALUE})")
    Path config;

    /** Opens the device, runs {@code job} with it and closes it again; see {@link LocalDevice#withDevice}. */
    <T> T run(LocalDevice.Job<T> job) {
        return LocalDevice.withDevice(config, device, job);
    }
}
