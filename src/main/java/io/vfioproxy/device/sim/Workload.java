package io.vfioproxy.device.sim;

import java.util.SplittableRandom;
import java.util.function.IntConsumer;

/**
 * The simulated device's workload: while the device runs it writes pages at its dirty rate, drawn from its seed.
 * It catches up with the clock at the start of every device operation, so the state changes only while the device
 * runs, as a real one's does. Not thread-safe: the device's lock guards it.
 */
final class Workload {

    private final double pagesPerNano;
    private final int pageCount;
    private final SplittableRandom random;
    private long lastNanos = System.nanoTime();
    private double carry;

    Workload(long dirtyBytesPerSecond, int pageSize, int pageCount, long seed) {
        this.pagesPerNano = dirtyBytesPerSecond / (double) pageSize / 1e9;
        this.pageCount = pageCount;
        this.random = new SplittableRandom(seed ^ 0x5DEECE66DL);
    }

    /** Writes, through {@code write}, the pages the workload dirtied since the last call if the device ran. */
    void catchUp(boolean running, IntConsumer write) {
        long now = System.nanoTime();
        if (pagesPerNano > 0 && running) {
            carry += (now - lastNanos) * pagesPerNano;
            long pages = (long) carry;
            carry -= pages;
            for (long i = 0; i < pages; i++) {
                write.accept(random.nextInt(pageCount));
            }
        }
        lastNanos = now;
    }
}
