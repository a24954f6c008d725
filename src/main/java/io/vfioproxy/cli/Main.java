package io.vfioproxy.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine;

/** {@code java -jar vfio-migration-proxy.jar <command>}. */
@Command(name = "vfio-migration-proxy", mixinStandardHelpOptions = true, version = "vfio-migration-proxy 0.1.0",
        description = "Live-migrates VFIO device state (migration protocol v2) between node agents.",
        subcommands = {DemoCommand.class, AgentCommand.class, MigrateCommand.class, RelayCommand.class, WatchCommand.class, BenchCommand.class,
            StatusCommand.class, DevicesCommand.class,
            SaveCommand.class, RestoreCommand.class, FsmCommand.class, CertsCommand.class, ChaosCommand.class,
            CommandLine.HelpCommand.class})
public final class Main {

    public static void main(String[] args) {
        // One line per log record (JUL, which Vert.x logs through too), unless the user configured a format.
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tFT%1$tT.%1$tL %4$s %3$s: %5$s%6$s%n");
        }
        System.exit(run(args));
    }

    /** Runs the command line and returns the exit code, without exiting. */
    public static int run(String... args) {
        return new CommandLine(new Main()).execute(args);
    }
}
