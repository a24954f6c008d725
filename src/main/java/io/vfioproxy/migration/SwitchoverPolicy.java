package io.vfioproxy.migration;

import io.vfioproxy.util.ByteSize;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * When pre-copy ends and the devices stop: a pure function of numbers, so every case can be driven by a unit test.
 *
 * <p>It switches over once every pre-copy device's initial data is out and acknowledged by the destination
 * (DEV_INIT_DATA_SENT, SWITCHOVER_ACK), and the rest fits the downtime limit: at the measured bandwidth, or, before
 * the bandwidth is measured, at {@link #FLOOR_BYTES_PER_SECOND}, the least any link between two nodes moves. So a
 * state of a few hundred bytes (mtty's 96) switches over at once, while a large one waits for a measurement. Past the
 * pre-copy budget it switches over whatever is left. QEMU decides alike: pending bytes against bandwidth times the
 * downtime limit (migration_iteration_run()).
 *
 * @param downtimeLimitMillis the longest the devices should be stopped
 * @param budgetMillis how long pre-copy may last before it switches over anyway
 */
record SwitchoverPolicy(long downtimeLimitMillis, long budgetMillis) {

    /** 10 MB/s: below any link two nodes migrate over; a state that fits the limit even at this rate cannot miss it. */
    static final double FLOOR_BYTES_PER_SECOND = 10e6;

    /** What pre-copy has reached, at one check. */
    record Progress(long remainingBytes, BandwidthMeter.Estimate bandwidth, boolean initialDataOut,
            boolean acknowledged, long iterations, long elapsedMillis) {
    }

    /**
     * The decision at one check.
     *
     * @param switchOver true to stop the devices now
     * @param reason why, in words an operator reads ({@code null} while pre-copy goes on)
     */
    record Decision(boolean switchOver, String reason) {
        static final Decision CONTINUE = new Decision(false, null);
    }

    Decision decide(Progress p) {
        BandwidthMeter.Estimate bw = p.bandwidth();
        double rate = bw.measured() ? bw.bytesPerSecond() : FLOOR_BYTES_PER_SECOND;
        double expectedMillis = p.remainingBytes() / rate * 1000;
        boolean fits = expectedMillis <= downtimeLimitMillis;
        if (p.initialDataOut() && p.acknowledged() && fits) {
            return new Decision(true, "converged after " + iterations(p.iterations()) + ": " + estimate(p, expectedMillis)
                    + ", within the " + downtimeLimitMillis + " ms downtime limit");
        }
        if (p.elapsedMillis() < budgetMillis) {
            return Decision.CONTINUE;
        }
        List<String> why = new ArrayList<>();
        if (!p.initialDataOut()) {
            why.add("initial data not all read");
        }
        if (!p.acknowledged()) {
            why.add("not acknowledged by the destination");
        }
        if (!fits) {
            why.add(estimate(p, expectedMillis) + ", over the " + downtimeLimitMillis + " ms downtime limit (the "
                    + "devices dirty their state faster than the link moves it)");
        }
        return new Decision(true, "pre-copy budget of " + budgetMillis + " ms ran out: " + String.join(", ", why));
    }

    private static String iterations(long n) {
        return n + " pre-copy iteration" + (n == 1 ? "" : "s");
    }

    private static String estimate(Progress p, double expectedMillis) {
        BandwidthMeter.Estimate bw = p.bandwidth();
        String left = p.remainingBytes() + " bytes left";
        if (bw.measured()) {
            return String.format(Locale.ROOT, "%s, at %s/s about %d ms", left, rate(bw.bytesPerSecond()),
                    Math.round(expectedMillis));
        }
        return String.format(Locale.ROOT, "%s, about %d ms even at %s/s (the bandwidth is not measured yet: %s "
                + "moved so far)", left, Math.round(expectedMillis), rate(FLOOR_BYTES_PER_SECOND),
                ByteSize.format(bw.measuredBytes()));
    }

    private static String rate(double bytesPerSecond) {
        return bytesPerSecond >= 1e9 ? String.format(Locale.ROOT, "%.2f GB", bytesPerSecond / 1e9)
                : String.format(Locale.ROOT, "%.2f MB", bytesPerSecond / 1e6);
    }
}
