package io.vfioproxy.device.sim;

import java.util.concurrent.locks.LockSupport;

/**
 * Holds a device's migration data to a rate of its own, as a device whose firmware produces and absorbs its state
 * at its own pace does (mlx5 saves and loads a VF's state through firmware commands, well below what a link moves).
 * A call that moved {@code n} bytes returns once the device's running total allows them; a device whose data
 * comes slower than its stream can carry it is where several devices on connections of their own gain the most.
 *
 * <p>Called by one data session at a time, on the device's thread, outside the device's lock (so state queries
 * still answer while a call waits).
 */
final class Pacer {

    private final double nanosPerByte;
    /** When the bytes moved so far are paid for. */
    private long next = Long.MIN_VALUE;

    /** @param bytesPerSecond the device's data rate; 0 for no limit */
    Pacer(long bytesPerSecond) {
        this.nanosPerByte = bytesPerSecond <= 0 ? 0 : 1e9 / bytesPerSecond;
    }

    /** Waits until {@code bytes} more fit the rate since the first call (idle time is not saved up). */
    synchronized void pace(int bytes) {
        if (nanosPerByte == 0 || bytes <= 0) {
            return;
        }
        long now = System.nanoTime();
        if (next == Long.MIN_VALUE || next - now < 0) {
            next = now;
        }
        next += (long) (bytes * nanosPerByte);
        for (long wait; (wait = next - System.nanoTime()) > 0; ) {
            LockSupport.parkNanos(wait);
        }
    }
}
