package io.vfioproxy.device;

import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import java.io.IOException;

/**
 * A failed device call. The message names the device, the call, the state the device was in and the errno,
 * for example {@code sim0: SET MIG_DEVICE_STATE STOP -> STOP_COPY failed in state STOP: EIO (I/O error)}.
 */
public class VfioException extends IOException {

    private final String device;
    private final String call;
    private final DeviceState state;
    private final int errno;

    public VfioException(String device, String call, DeviceState state, int errno, String detail) {
        super(format(device, call, state, errno, detail));
        this.device = device;
        this.call = call;
        this.state = state;
        this.errno = errno;
    }

    public VfioException(String device, String call, DeviceState state, Errno errno) {
        this(device, call, state, errno.value(), null);
    }

    public VfioException(String device, String call, DeviceState state, Errno errno, String detail) {
        this(device, call, state, errno.value(), detail);
    }

    private static String format(String device, String call, DeviceState state, int errno, String detail) {
        Errno e = Errno.of(errno);
        String errText = e == null ? "errno " + errno : e.name() + " (" + e.description() + ")";
        return device + ": " + call + " failed in state " + (state == null ? "unknown" : state) + ": " + errText
                + (detail == null || detail.isEmpty() ? "" : ": " + detail);
    }

    public String device() {
        return device;
    }

    public String call() {
        return call;
    }

    /** The device state when the call failed, or null where it is not known. */
    public DeviceState state() {
        return state;
    }

    /** The errno value. */
    public int errno() {
        return errno;
    }

    public boolean is(Errno e) {
        return errno == e.value();
    }
}
