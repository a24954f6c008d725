package io.vfioproxy.migration;

/**
 * Measures how fast device data leaves for the destination, from the writer's running byte count sampled every
 * few milliseconds. A window closes once it spans at least {@value #WINDOW_NANOS} ns and holds at least
 * {@value #MIN_WINDOW_BYTES} bytes (a slow link just makes windows longer); the estimate is the mean of the last
 * window and the one before, so one odd window moves it only half way. A few bytes over a few milliseconds say
 * nothing about the link: until a window closed the meter has no estimate, and says so.
 *
 * <p>Not thread-safe: it lives on the migration's context.
 */
final class BandwidthMeter {

    static final long WINDOW_NANOS = 100_000_000L;
    static final long MIN_WINDOW_BYTES = 1 << 20;

    /**
     * What the meter knows.
     *
     * @param bytesPerSecond the estimate, or 0 when there is none yet
     * @param measuredBytes bytes moved so far
     */
    record Estimate(double bytesPerSecond, long measuredBytes) {
        /** True once at least one window closed: the estimate comes from enough bytes to mean something. */
        boolean measured() {
            return bytesPerSecond > 0;
        }
    }

    private long windowNanos = -1;
    private long windowBytes;
    private long lastBytes;
    private double bytesPerSecond;

    /** Records that {@code totalBytes} had been written, since the migration began, by {@code nowNanos}. */
    void sample(long nowNanos, long totalBytes) {
        if (windowNanos < 0) {
            windowNanos = nowNanos;
            windowBytes = totalBytes;
        }
        lastBytes = totalBytes;
        long bytes = totalBytes - windowBytes;
        long span = nowNanos - windowNanos;
        if (span >= WINDOW_NANOS && bytes >= MIN_WINDOW_BYTES) {
            closeWindow(nowNanos, totalBytes);
        } else if (span >= WINDOW_NANOS && bytes == 0) {
            // Nothing to send is not a slow link: idle time does not count against the next window.
            windowNanos = nowNanos;
        }
    }

    /**
     * The transfer ended at {@code nowNanos} with {@code totalBytes} written: the open window closes with what it
     * holds, however short, so a migration that ended inside its first window still reports the rate it moved at.
     * A window of under {@value #MIN_WINDOW_BYTES} bytes still says nothing and leaves the estimate as it was.
     */
    void finish(long nowNanos, long totalBytes) {
        sample(nowNanos, totalBytes);
        if (nowNanos > windowNanos && totalBytes - windowBytes >= MIN_WINDOW_BYTES) {
            closeWindow(nowNanos, totalBytes);
        }
    }

    private void closeWindow(long nowNanos, long totalBytes) {
        double rate = (totalBytes - windowBytes) / ((nowNanos - windowNanos) / 1e9);
        bytesPerSecond = bytesPerSecond == 0 ? rate : 0.5 * bytesPerSecond + 0.5 * rate;
        windowNanos = nowNanos;
        windowBytes = totalBytes;
    }

    Estimate estimate() {
        return new Estimate(bytesPerSecond, lastBytes);
    }
}
