package io.vfioproxy.cli;

import io.vfioproxy.migration.Checkpoint;
import io.vfioproxy.util.ByteSize;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Saves a device's migration state to a file. */
@Command(name = "save", mixinStandardHelpOptions = true,
        description = "Save a device's state to a file (STOP_COPY). The device is left in STOP, or RUNNING with "
                + "--resume. The device is a name from the configuration file, a cdev path, a PCI address or an "
                + "mdev UUID.")
public final class SaveCommand implements Callable<Integer> {

    @Mixin
    LocalDeviceOptions target;

    @Option(names = "--out", required = true, description = "the checkpoint file to write")
    Path out;

    @Option(names = "--resume", description = "return the device to RUNNING after saving")
    boolean resume;

    @Option(names = "--chunk", defaultValue = "1MiB", description = "read size (${DEFAULT-VALUE})")
    String chunk;

    @Override
    public Integer call() {
        try {
            Checkpoint.Result r = target.run((vertx, handle) ->
                    Checkpoint.save(vertx, handle, out, (int) ByteSize.parse(chunk), resume));
            System.out.printf("saved %s of %s to %s; device %s is %s%n", ByteSize.format(r.dataBytes()), target.device,
                    out, target.device, r.deviceState());
            return 0;
        } catch (RuntimeException e) {
            System.err.println("save failed: " + e.getMessage());
            return 1;
        }
    }
}
