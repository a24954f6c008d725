package io.vfioproxy.bench;

import io.netty.util.internal.PlatformDependent;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Samples heap and direct memory every few milliseconds on a thread of its own and keeps the peaks. Direct
 * memory is Netty's (pooled buffers) plus the JDK's direct buffer pool.
 */
public final class MemorySampler implements AutoCloseable {

    private final MemoryMXBean memory = ManagementFactory.getMemoryMXBean();
    private final AtomicLong peakHeap = new AtomicLong();
    private final AtomicLong peakDirect = new AtomicLong();
    private final Thread thread;
    private volatile boolean running = true;

    public MemorySampler() {
        thread = new Thread(() -> {
            while (running) {
                sample();
                try {
                    Thread.sleep(5);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "vmp-memory-sampler");
        thread.setDaemon(true);
        thread.start();
    }

    public static long heap() {
        return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
    }

    public static long direct() {
        long nio = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
                .filter(p -> p.getName().equals("direct")).mapToLong(BufferPoolMXBean::getMemoryUsed).sum();
        return Math.max(0, PlatformDependent.usedDirectMemory()) + nio;
    }

    private void sample() {
        peakHeap.accumulateAndGet(memory.getHeapMemoryUsage().getUsed(), Math::max);
        peakDirect.accumulateAndGet(direct(), Math::max);
    }

    public long peakHeap() {
        return peakHeap.get();
    }

    public long peakDirect() {
        return peakDirect.get();
    }

    @Override
    public void close() {
        running = false;
        thread.interrupt();
        sample();
    }
}
