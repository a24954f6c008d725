package io.vfioproxy.device.sim;

import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.Errno;

/**
 * The fd rules both kinds of data session keep, as the kernel's do: a closed fd gives EBADF; a session that ended
 * (its device left the saving group, left RESUMING, or was reset) gives ENODEV, and its fd must still be closed.
 * Every call runs under the device's lock.
 */
abstract class Session implements DataChannel {

    final SimulatedDevice device;
    boolean ended;
    private boolean fdClosed;

    Session(SimulatedDevice device) {
        this.device = device;
    }

    void checkUsable(String call) throws VfioException {
        if (fdClosed) {
            throw device.error(call, Errno.EBADF, "data fd closed");
        }
        if (ended) {
            throw device.error(call, Errno.ENODEV, "the data session has ended");
        }
    }

    /** A call this kind of session does not take: fails with {@code errno}, after the fd checks. */
    VfioException refuse(String call, Errno errno, String why) {
        synchronized (device) {
            try {
                checkUsable(call);
            } catch (VfioException e) {
                return e;
            }
            return device.error(call, errno, why);
        }
    }

    @Override
    public void close() {
        synchronized (device) {
            fdClosed = true;
        }
    }
}
