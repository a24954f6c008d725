package io.vfioproxy.uapi;

import static io.vfioproxy.uapi.DeviceState.ERROR;
import static io.vfioproxy.uapi.DeviceState.PRE_COPY;
import static io.vfioproxy.uapi.DeviceState.PRE_COPY_P2P;
import static io.vfioproxy.uapi.DeviceState.RESUMING;
import static io.vfioproxy.uapi.DeviceState.RUNNING;
import static io.vfioproxy.uapi.DeviceState.RUNNING_P2P;
import static io.vfioproxy.uapi.DeviceState.STOP;
import static io.vfioproxy.uapi.DeviceState.STOP_COPY;

import java.util.ArrayList;
import java.util.List;

/**
 * The kernel's migration state machine: which direct arcs a driver walks for a requested state change.
 *
 * <p>This is {@code vfio_mig_get_next_state()} of drivers/vfio/vfio_main.c with its table
 * {@code vfio_from_fsm_table}, applied until the target is reached, as every migration driver's
 * {@code migration_set_state} does. One difference is deliberate: the kernel's skip loop (before the 2026 stable
 * fix "Terminate the skip loop on the ERROR sentinel") spins forever on STOP_COPY -&gt; PRE_COPY(_P2P) for a
 * PRE_COPY device; here it ends in EINVAL, which is what the fixed kernel returns. Callers check every request
 * here before issuing the ioctl, so the agent never sends the kernel a request it would spin on.
 */
public final class StateMachine {

    /** {@code vfio_from_fsm_table[cur][new]}: the next state on the way from cur to new, indexed by uAPI value. */
    private static final DeviceState[][] NEXT = new DeviceState[DeviceState.COUNT][DeviceState.COUNT];

    static {
        row(STOP, STOP, RUNNING_P2P, STOP_COPY, RESUMING, RUNNING_P2P, RUNNING_P2P, RUNNING_P2P);
        row(RUNNING, RUNNING_P2P, RUNNING, RUNNING_P2P, RUNNING_P2P, RUNNING_P2P, PRE_COPY, RUNNING_P2P);
        row(STOP_COPY, STOP, STOP, STOP_COPY, STOP, STOP, ERROR, ERROR);
        row(RESUMING, STOP, STOP, STOP, RESUMING, STOP, STOP, STOP);
        row(RUNNING_P2P, STOP, RUNNING, STOP, STOP, RUNNING_P2P, RUNNING, PRE_COPY_P2P);
        row(PRE_COPY, RUNNING, RUNNING, PRE_COPY_P2P, RUNNING, RUNNING, PRE_COPY, PRE_COPY_P2P);
        row(PRE_COPY_P2P, RUNNING_P2P, RUNNING_P2P, STOP_COPY, RUNNING_P2P, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P);
        row(ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR);
    }

    /** Fills one row; the arguments after {@code cur} are the next states toward STOP, RUNNING, ... PRE_COPY_P2P. */
    private static void row(DeviceState cur, DeviceState... nextByTarget) {
        NEXT[cur.value()][ERROR.value()] = ERROR;
        for (int target = 1; target < DeviceState.COUNT; target++) {
            NEXT[cur.value()][target] = nextByTarget[target - 1];
        }
    }

    private StateMachine() {
    }

    /**
     * The one next arc from {@code cur} toward {@code target}, as {@code vfio_mig_get_next_state()} picks it.
     *
     * @throws RefusedTransitionException (EINVAL) where the kernel refuses: an unsupported current or target
     *         state, ERROR as a target, or an arc through ERROR
     */
    public static DeviceState nextState(MigrationFlags flags, DeviceState cur, DeviceState target) {
        if (!flags.supports(cur)) {
            throw new RefusedTransitionException(flags, cur, target,
                    "the current state " + cur + " is not supported with flags " + flags);
        }
        if (!flags.supports(target)) {
            throw new RefusedTransitionException(flags, cur, target, target == ERROR
                    ? "ERROR cannot be requested"
                    : "the target state " + target + " is not supported with flags " + flags);
        }
        DeviceState next = NEXT[cur.value()][target.value()];
        // Skip optional states the device lacks; stop on ERROR, where an unfixed kernel would spin.
        while (next != ERROR && !flags.supports(next)) {
            next = NEXT[next.value()][target.value()];
        }
        if (next == ERROR) {
            throw new RefusedTransitionException(flags, cur, target,
                    "the kernel has no path from " + cur + " to " + target);
        }
        return next;
    }

    /**
     * Every state the device passes through, in order, when asked to go from {@code from} to {@code target}:
     * the states after {@code from}, ending with {@code target}. Empty when they are equal (the drivers'
     * {@code while (cur != new)} loop does nothing then).
     *
     * @throws RefusedTransitionException (EINVAL) where the kernel refuses the request
     */
    public static List<DeviceState> path(MigrationFlags flags, DeviceState from, DeviceState target) {
        List<DeviceState> path = new ArrayList<>(4);
        DeviceState cur = from;
        while (cur != target) {
            cur = nextState(flags, cur, target);
            path.add(cur);
            if (path.size() > DeviceState.COUNT) {
                throw new IllegalStateException("state machine loop from " + from + " to " + target);
            }
        }
        return List.copyOf(path);
    }

    /**
     * True for the arcs on which the kernel opens a new data session and returns a data_fd:
     * RUNNING -&gt; PRE_COPY, RUNNING_P2P -&gt; PRE_COPY_P2P and STOP -&gt; STOP_COPY (saving), STOP -&gt; RESUMING
     * (resuming).
     */
    public static boolean opensSession(DeviceState from, DeviceState to) {
        return (from == RUNNING && to == PRE_COPY)
                || (from == RUNNING_P2P && to == PRE_COPY_P2P)
                || (from == STOP && to == STOP_COPY)
                || (from == STOP && to == RESUMING);
    }

    /**
     * True for the arcs that end the open data session: leaving the saving group (STOP_COPY -&gt; STOP,
     * PRE_COPY -&gt; RUNNING, PRE_COPY_P2P -&gt; RUNNING_P2P) and RESUMING -&gt; STOP.
     */
    public static boolean closesSession(DeviceState from, DeviceState to) {
        return (from.isSaving() && !to.isSaving()) || (from == RESUMING && to != RESUMING);
    }

    /** The text form the {@code fsm} command prints: the walked states joined by " &gt; ", or "=" for none. */
    public static String describe(List<DeviceState> path) {
        if (path.isEmpty()) {
            return "=";
        }
        StringBuilder sb = new StringBuilder();
        for (DeviceState s : path) {
            if (sb.length() > 0) {
                sb.append(" > ");
            }
            sb.append(s.name());
        }
        return sb.toString();
    }
}
