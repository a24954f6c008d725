package io.vfioproxy.cli;

import io.vfioproxy.chaos.ChaosRun;
import io.vfioproxy.util.ByteSize;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Migrations between two agent processes under random faults, with the invariants checked after each. */
@Command(name = "chaos", mixinStandardHelpOptions = true,
        description = "Runs migrations between two agents in JVMs of their own on loopback, each with a fault chosen "
                + "by the seed (an agent SIGKILLed and restarted, the connection cut or stalled, an ioctl failing, "
                + "a slow device, a cancel, several at once), checks after each that no device was stranded and no "
                + "state lost, and at the end that no fd or thread leaked. Prints a line per fault class and "
                + "'chaos: N migrations, F faults, stranded S, lost L, leaked K'; exit 0 only when all three are 0.")
public final class ChaosCommand implements Callable<Integer> {

    @Option(names = "--migrations", defaultValue = "200", description = "how many (${DEFAULT-VALUE})")
    int migrations;

    @Option(names = "--seed", defaultValue = "1", description = "chooses the faults (${DEFAULT-VALUE})")
    long seed;

    @Option(names = "--size", defaultValue = "4MiB", description = "each simulated device's state (${DEFAULT-VALUE})")
    String size;

    @Option(names = "--dir", description = "where the agents keep their journals and device states (a new "
            + "temporary directory by default)")
    Path dir;

    @Override
    public Integer call() throws Exception {
        Path where = dir != null ? Files.createDirectories(dir) : Files.createTempDirectory("vmp-chaos");
        System.out.println("chaos: " + migrations + " migrations, seed " + seed + ", " + size
                + " devices, two agents in the clear on loopback (security.insecure), files in " + where);
        ChaosRun.Summary summary = new ChaosRun(where, ByteSize.parse(size), seed, System.out).run(migrations);
        return summary.passed() ? 0 : 1;
    }
}
