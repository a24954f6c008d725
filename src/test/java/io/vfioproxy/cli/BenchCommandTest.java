package io.vfioproxy.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.vfioproxy.cli.BenchCommand.Compared;
import io.vfioproxy.cli.BenchCommand.Measured;
import org.junit.jupiter.api.Test;

class BenchCommandTest {

    @Test
    void theRatiosAreTakenRoundByRoundSoASlowRoundCountsOnce() {
        // The machine is twice as slow in the second round, for the agents and both baselines alike: each round says
        // the agents reach 0.80 of the device-to-device baseline. Medians taken apart would pair the agents' slow
        // round with the baseline's fast one.
        Measured[] agents = {new Measured(2.4, 0.8), new Measured(1.2, 1.6), new Measured(2.0, 1.0)};
        Measured[] raw = {new Measured(4.0, 0.4), new Measured(2.0, 0.8), new Measured(4.0, 0.4)};
        Measured[] devices = {new Measured(3.0, 0.5), new Measured(1.5, 1.0), new Measured(3.0, 0.5)};

        Compared c = Compared.of(agents, raw, devices, new double[] {10, 30, 20});

        assertThat(c.deviceRatios()).containsExactly(new double[] {0.80, 0.80, 2.0 / 3.0}, within(1e-9));
        assertThat(c.deviceRatio()).isCloseTo(0.80, within(1e-9));
        assertThat(c.ratio()).isCloseTo(0.60, within(1e-9));
        assertThat(c.cpuRatios()).containsExactly(new double[] {1.6, 1.6, 2.0}, within(1e-9));
        assertThat(c.cpuRatio()).isCloseTo(1.6, within(1e-9));
        // The medians of each side on their own: what the report prints as the agents' and baselines' figures.
        assertThat(c.agents().gbPerSecond()).isEqualTo(2.0);
        assertThat(c.devices().gbPerSecond()).isEqualTo(3.0);
        assertThat(c.downtimeMillis()).isEqualTo(20);
        assertThat(BenchCommand.rounds(c.deviceRatios())).isEqualTo("0.80 0.80 0.67");
    }

    @Test
    void anEvenNumberOfRoundsTakesTheMeanOfTheMiddleTwo() {
        assertThat(BenchCommand.median(new double[] {4, 1, 3, 2})).isEqualTo(2.5);
        assertThat(BenchCommand.ratios(new double[] {1, 3}, new double[] {2, 4})).containsExactly(0.5, 0.75);
    }
}
