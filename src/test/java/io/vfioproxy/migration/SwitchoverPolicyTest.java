package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;

import io.vfioproxy.migration.BandwidthMeter.Estimate;
import io.vfioproxy.migration.SwitchoverPolicy.Decision;
import io.vfioproxy.migration.SwitchoverPolicy.Progress;
import org.junit.jupiter.api.Test;

/** The switchover decision and the bandwidth it rests on, driven with numbers. */
class SwitchoverPolicyTest {

    private static final long MS = 1_000_000L;
    private static final long MIB = 1 << 20;
    private final SwitchoverPolicy policy = new SwitchoverPolicy(300, 30_000);
    private static final Estimate UNMEASURED = new Estimate(0, 96);

    private Decision decide(long remaining, Estimate bw, boolean out, boolean acked, long elapsedMillis) {
        return policy.decide(new Progress(remaining, bw, out, acked, 1, elapsedMillis));
    }

    @Test
    void aTinyStateSwitchesOverAtOnceWithoutAMeasuredBandwidth() {
        // mtty: 96 bytes, whatever the few bytes that moved suggest about the link.
        Decision d = decide(96, UNMEASURED, true, true, 5);
        assertThat(d.switchOver()).isTrue();
        assertThat(d.reason()).startsWith("converged after 1 pre-copy iteration: 96 bytes left")
                .contains("even at 10.00 MB/s").contains("not measured yet: 96 B moved")
                .contains("within the 300 ms downtime limit").doesNotContain("B/s about");
    }

    @Test
    void aLargeStateWaitsForAMeasurementBeforeItSwitchesOver() {
        assertThat(decide(64 * MIB, UNMEASURED, true, true, 5)).isEqualTo(Decision.CONTINUE);
        Decision measured = decide(64 * MIB, new Estimate(1e9, 512 * MIB), true, true, 500);
        assertThat(measured.switchOver()).isTrue();
        assertThat(measured.reason()).contains("at 1.00 GB/s about 67 ms");
    }

    @Test
    void whatDoesNotFitTheLimitAtTheMeasuredBandwidthWaits() {
        assertThat(decide(512 * MIB, new Estimate(1e9, 1024 * MIB), true, true, 1000)).isEqualTo(Decision.CONTINUE);
    }

    @Test
    void initialDataMustBeOutAndAcknowledgedFirst() {
        assertThat(decide(96, UNMEASURED, false, true, 5)).isEqualTo(Decision.CONTINUE);
        assertThat(decide(96, UNMEASURED, true, false, 5)).isEqualTo(Decision.CONTINUE);
    }

    @Test
    void theBudgetEndsPreCopyAndTheReasonSaysWhatWasMissing() {
        Decision d = decide(512 * MIB, new Estimate(1e9, 8L << 30), true, false, 30_000);
        assertThat(d.switchOver()).isTrue();
        assertThat(d.reason()).startsWith("pre-copy budget of 30000 ms ran out: ")
                .contains("not acknowledged by the destination")
                .contains("536870912 bytes left, at 1.00 GB/s about 537 ms, over the 300 ms downtime limit")
                .doesNotContain("initial data not all read");
        // A state that fits but was never acknowledged does not claim the devices dirty too fast.
        assertThat(decide(96, UNMEASURED, true, false, 30_000).reason()).doesNotContain("dirty");
    }

    @Test
    void theMeterHasNoEstimateUntilAWindowOfEnoughBytesClosed() {
        BandwidthMeter meter = new BandwidthMeter();
        meter.sample(0, 0);
        meter.sample(5 * MS, 96);
        assertThat(meter.estimate().measured()).isFalse();
        assertThat(meter.estimate().measuredBytes()).isEqualTo(96);
        // 100 ms with 96 bytes says nothing about the link either.
        meter.sample(100 * MS, 96);
        assertThat(meter.estimate().measured()).isFalse();
        meter.sample(200 * MS, 96 + 100 * MIB);
        assertThat(meter.estimate().bytesPerSecond()).isEqualTo((96 + 100 * MIB) / 0.2);
    }

    @Test
    void aSlowLinkMakesLongerWindowsAndIdleTimeDoesNotCount() {
        BandwidthMeter slow = new BandwidthMeter();
        slow.sample(0, 0);
        slow.sample(100 * MS, MIB / 2);
        assertThat(slow.estimate().measured()).isFalse();
        slow.sample(200 * MS, MIB);
        assertThat(slow.estimate().bytesPerSecond()).isEqualTo(MIB / 0.2);

        BandwidthMeter idle = new BandwidthMeter();
        idle.sample(0, 0);
        idle.sample(1000 * MS, 0);
        idle.sample(1100 * MS, 10 * MIB);
        assertThat(idle.estimate().bytesPerSecond()).isEqualTo(10 * MIB / 0.1);
    }

    @Test
    void eachWindowMovesTheEstimateHalfWay() {
        BandwidthMeter meter = new BandwidthMeter();
        meter.sample(0, 0);
        meter.sample(100 * MS, 100 * MIB);
        meter.sample(200 * MS, 100 * MIB + 300 * MIB);
        assertThat(meter.estimate().bytesPerSecond()).isEqualTo((1000.0 * MIB + 3000.0 * MIB) / 2);
    }

    @Test
    void aTransferThatEndsInsideItsFirstWindowStillReportsItsRate() {
        // 256 MiB in 80 ms: over before a window could close (the CI machine's PrecopyIT ended with bandwidth 0).
        BandwidthMeter fast = new BandwidthMeter();
        fast.sample(0, 0);
        fast.sample(40 * MS, 128 * MIB);
        assertThat(fast.estimate().measured()).isFalse();
        fast.finish(80 * MS, 256 * MIB);
        assertThat(fast.estimate().bytesPerSecond()).isEqualTo(256 * MIB / 0.08);

        // A tail of a few bytes says nothing and leaves the measured estimate alone.
        BandwidthMeter tail = new BandwidthMeter();
        tail.sample(0, 0);
        tail.sample(100 * MS, 100 * MIB);
        tail.finish(110 * MS, 100 * MIB + 96);
        assertThat(tail.estimate().bytesPerSecond()).isEqualTo(1000.0 * MIB);
        assertThat(tail.estimate().measuredBytes()).isEqualTo(100 * MIB + 96);
    }
}
