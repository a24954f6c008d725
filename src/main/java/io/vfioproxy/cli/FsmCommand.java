package io.vfioproxy.cli;

import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.MigrationFlags;
import io.vfioproxy.uapi.RefusedTransitionException;
import io.vfioproxy.uapi.StateMachine;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** Prints the arcs the kernel walks for a state change, or the whole table. */
@Command(name = "fsm", mixinStandardHelpOptions = true,
        description = "Show the arcs the kernel walks from one migration state to another (EINVAL, exit 22, "
                + "where it refuses). Without --from/--to, print FROM<TAB>TO<TAB>PATH for every pair.")
public final class FsmCommand implements Callable<Integer> {

    /** The exit code for a refused change: EINVAL. */
    static final int EINVAL = 22;

    @Spec
    CommandSpec spec;

    @Option(names = "--flags", required = true, description = "migration flags, e.g. STOP_COPY,P2P,PRE_COPY")
    String flags;

    @Option(names = "--from", description = "current state")
    String from;

    @Option(names = "--to", description = "target state")
    String to;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        MigrationFlags f = MigrationFlags.parse(flags);
        if (from == null && to == null) {
            for (DeviceState a : DeviceState.values()) {
                for (DeviceState b : DeviceState.values()) {
                    out.println(a + "\t" + b + "\t" + describe(f, a, b));
                }
            }
            out.flush();
            return 0;
        }
        if (from == null || to == null) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "give both --from and --to, or neither");
        }
        String path = describe(f, DeviceState.parse(from), DeviceState.parse(to));
        out.println(path);
        out.flush();
        return path.equals("EINVAL") ? EINVAL : 0;
    }

    private static String describe(MigrationFlags flags, DeviceState from, DeviceState to) {
        try {
            return StateMachine.describe(StateMachine.path(flags, from, to));
        } catch (RefusedTransitionException e) {
            return "EINVAL";
        }
    }
}
