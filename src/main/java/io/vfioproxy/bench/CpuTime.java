package io.vfioproxy.bench;

import java.lang.management.ManagementFactory;

/**
 * The CPU time (user and system) this JVM used, from its own accounting: what a run cost where the cores are
 * shared, which its throughput alone does not tell.
 */
public final class CpuTime {

    private static final com.sun.management.OperatingSystemMXBean OS =
            (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();

    private CpuTime() {
    }

    /** Nanoseconds of CPU this process used so far, all threads (the JIT and the collector included). */
    public static long processNanos() {
        return OS.getProcessCpuTime();
    }
}
