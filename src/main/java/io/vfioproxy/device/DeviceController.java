package io.vfioproxy.device;

import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import io.vfioproxy.uapi.MigrationFlags;
import io.vfioproxy.uapi.RefusedTransitionException;
import io.vfioproxy.uapi.StateMachine;
import java.util.List;
import java.util.Optional;

/**
 * Drives one {@link MigrationDevice} the way QEMU's hw/vfio/migration.c does, and reports every arc.
 *
 * <ul>
 *   <li>Every request is checked against {@link StateMachine} first: a refused one fails with EINVAL before any
 *       ioctl, so the kernel is never sent an arc it would reject or spin on.</li>
 *   <li>A change is walked one direct arc at a time, so each arc is known, timed and published, and a failure
 *       leaves the device in a known state.</li>
 *   <li>On failure the recover state is tried; if that fails too the device is reset and treated as RUNNING.</li>
 *   <li>A data channel returned while one is open is an error ("data_fd out of sync", EBADF).</li>
 * </ul>
 *
 * <p>Not thread-safe: it lives on the device's ordered worker context, like the kernel's per-device lock.
 */
public final class DeviceController implements AutoCloseable {

    /** Receives every state change of the device, on the device's worker thread. */
    @FunctionalInterface
    public interface TransitionListener {
        void onTransition(String device, DeviceState from, DeviceState to, String cause, long arcNanos);

        /** The device was opened in {@code state} (read from the device, never assumed). */
        default void onOpened(String device, DeviceState state) {
        }
    }

    private final MigrationDevice device;
    private final MigrationFlags flags;
    private final TransitionListener listener;
    private DeviceState state;
    private DataChannel channel;

    /**
     * Probes the device's migration flags and reads its state: a device keeps its state across close and reopen,
     * so RUNNING is never assumed.
     */
    public DeviceController(MigrationDevice device, TransitionListener listener) throws VfioException {
        this.device = device;
        this.listener = listener;
        this.flags = device.migrationFlags();
        this.state = device.state();
    }

    public String name() {
        return device.name();
    }

    public MigrationDevice device() {
        return device;
    }

    public MigrationFlags flags() {
        return flags;
    }

    /** The state as last set or read. */
    public DeviceState state() {
        return state;
    }

    /** The open data session, if any. */
    public Optional<DataChannel> channel() {
        return Optional.ofNullable(channel);
    }

    /** Reads the state from the device (GET) and publishes a change the agent did not make. */
    public DeviceState refreshState(String cause) throws VfioException {
        DeviceState actual = device.state();
        if (actual != state) {
            DeviceState was = state;
            state = actual;
            if (channel != null && StateMachine.closesSession(was, actual)) {
                closeChannel();
            }
            listener.onTransition(name(), was, actual, cause, 0);
        }
        return actual;
    }

    /**
     * Moves the device to {@code target}. On failure tries {@code recover}; if that fails (or recover is ERROR),
     * resets the device, which leaves it RUNNING. The original failure is thrown in every case.
     *
     * @return the data channel when this change opened a data session
     */
    public Optional<DataChannel> setState(DeviceState target, DeviceState recover, String cause)
            throws VfioException {
        if (target == state) {
            return Optional.empty();
        }
        if (state == DeviceState.ERROR) {
            // Only VFIO_DEVICE_RESET leaves ERROR (QEMU resets too); it lands in RUNNING, nothing else is attempted.
            VfioException failure = new VfioException(name(), "SET MIG_DEVICE_STATE ERROR -> " + target,
                    DeviceState.ERROR, Errno.EINVAL, "the device is in ERROR, which only VFIO_DEVICE_RESET leaves");
            VfioException reported = resetAfter(failure, cause + "; leaving ERROR");
            if (reported == failure && target == DeviceState.RUNNING) {
                return Optional.empty();
            }
            throw reported;
        }
        List<DeviceState> path;
        try {
            path = StateMachine.path(flags, state, target);
        } catch (RefusedTransitionException refused) {
            throw new VfioException(name(), "SET MIG_DEVICE_STATE " + state + " -> " + target, state, Errno.EINVAL,
                    "refused before the ioctl: " + refused.getMessage());
        }
        Optional<DataChannel> opened = Optional.empty();
        try {
            for (DeviceState next : path) {
                Optional<DataChannel> got = step(next, cause);
                if (got.isPresent()) {
                    opened = got;
                }
            }
            return opened;
        } catch (VfioException failure) {
            throw recover(recover, cause, failure);
        }
    }

    /** One direct arc. */
    private Optional<DataChannel> step(DeviceState next, String cause) throws VfioException {
        DeviceState from = state;
        long t0 = System.nanoTime();
        Optional<DataChannel> got = device.setState(next);
        long nanos = System.nanoTime() - t0;
        state = next;
        if (StateMachine.closesSession(from, next)) {
            closeChannel();
        }
        if (got.isPresent()) {
            if (channel != null) {
                got.get().close();
                throw new VfioException(name(), "SET MIG_DEVICE_STATE " + from + " -> " + next, next, Errno.EBADF,
                        "data_fd out of sync: a new data session was returned while one is open");
            }
            channel = got.get();
        }
        listener.onTransition(name(), from, next, cause, nanos);
        return got;
    }

    /**
     * After {@code failure}: the recover state, or a reset where that fails too (or recover is ERROR).
     *
     * @return what to throw: {@code failure}, or, when the reset failed as well, an error that reports both
     */
    private VfioException recover(DeviceState recover, String cause, VfioException failure) {
        String why = cause + "; recovering after: " + failure.getMessage();
        try {
            refreshState(why);
            if (recover == DeviceState.ERROR || state == DeviceState.ERROR) {
                return resetAfter(failure, why);
            }
            for (DeviceState next : StateMachine.path(flags, state, recover)) {
                step(next, why);
            }
            return failure;
        } catch (VfioException | RefusedTransitionException second) {
            return resetAfter(failure, why + "; recover state " + recover + " failed too: " + second.getMessage());
        }
    }

    /** Resets the device after {@code failure}; a failed reset is reported with the failure, not instead of it. */
    private VfioException resetAfter(VfioException failure, String why) {
        try {
            reset(why);
            return failure;
        } catch (VfioException resetFailed) {
            VfioException both = new VfioException(name(), failure.call(), failure.state(), failure.errno(),
                    "and then VFIO_DEVICE_RESET failed too: " + resetFailed.getMessage()
                            + "; the device's state is not known");
            both.addSuppressed(failure);
            both.addSuppressed(resetFailed);
            return both;
        }
    }

    /**
     * VFIO_DEVICE_RESET. Closes any data session; the device is treated as RUNNING, as the kernel and QEMU do.
     */
    public void reset(String cause) throws VfioException {
        DeviceState from = state;
        long t0 = System.nanoTime();
        device.reset();
        closeChannel();
        state = DeviceState.RUNNING;
        listener.onTransition(name(), from, DeviceState.RUNNING, "reset: " + cause, System.nanoTime() - t0);
    }

    /** Closes the data fd of the open session, if any. The kernel session may already have ended. */
    public void closeChannel() {
        if (channel != null) {
            channel.close();
            channel = null;
        }
    }

    @Override
    public void close() {
        closeChannel();
        device.close();
    }
}
