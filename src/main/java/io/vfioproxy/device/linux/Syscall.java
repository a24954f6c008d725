package io.vfioproxy.device.linux;

import com.sun.jna.LastErrorException;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.DeviceState;

/** Turns a failed libc call into a {@link VfioException} that names the device, the call, the state and the errno. */
final class Syscall {

    /** A libc call that may fail with an errno. */
    @FunctionalInterface
    interface Call<T> {
        T run() throws LastErrorException;
    }

    private Syscall() {
    }

    static <T> T run(String device, String call, DeviceState state, Call<T> body) throws VfioException {
        return run(device, call, state, null, body);
    }

    static <T> T run(String device, String call, DeviceState state, String detail, Call<T> body)
            throws VfioException {
        try {
            return body.run();
        } catch (LastErrorException e) {
            throw new VfioException(device, call, state, e.getErrorCode(), detail);
        }
    }

    /** Closes {@code fd}, ignoring errors: used on cleanup paths where the first error is the one to report. */
    static void closeQuietly(int fd) {
        if (fd >= 0) {
            try {
                LibC.close(fd);
            } catch (LastErrorException ignored) {
                // The fd is released by the kernel even when close reports an error.
            }
        }
    }
}
