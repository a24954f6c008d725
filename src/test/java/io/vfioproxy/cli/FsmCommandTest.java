package io.vfioproxy.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class FsmCommandTest {

    private final StringWriter out = new StringWriter();
    private final StringWriter err = new StringWriter();

    private int run(String... args) {
        return new CommandLine(new Main()).setOut(new PrintWriter(out)).setErr(new PrintWriter(err)).execute(args);
    }

    @Test
    void printsTheWalkedStates() {
        assertThat(run("fsm", "--flags", "STOP_COPY,P2P,PRE_COPY", "--from", "RUNNING", "--to", "STOP_COPY")).isZero();
        assertThat(out.toString()).isEqualTo("RUNNING_P2P > STOP > STOP_COPY" + System.lineSeparator());
    }

    @Test
    void printsEqualsForNoChange() {
        assertThat(run("fsm", "--flags", "STOP_COPY", "--from", "STOP", "--to", "STOP")).isZero();
        assertThat(out.toString().trim()).isEqualTo("=");
    }

    @Test
    void refusedChangesPrintEinvalAndExit22() {
        assertThat(run("fsm", "--flags", "STOP_COPY,P2P,PRE_COPY", "--from", "STOP_COPY", "--to", "PRE_COPY"))
                .isEqualTo(22);
        assertThat(out.toString().trim()).isEqualTo("EINVAL");
    }

    @Test
    void printsTheWholeTable() {
        assertThat(run("fsm", "--flags", "STOP_COPY,P2P")).isZero();
        String[] lines = out.toString().split(System.lineSeparator());
        assertThat(lines).hasSize(64);
        assertThat(lines).contains("RUNNING\tSTOP_COPY\tRUNNING_P2P > STOP > STOP_COPY", "STOP\tSTOP\t=",
                "RUNNING\tPRE_COPY\tEINVAL", "ERROR\tRUNNING\tEINVAL");
    }

    @Test
    void badInputIsAUsageError() {
        assertThat(run("fsm", "--flags", "STOP_COPY", "--from", "RUNNING")).isEqualTo(2);
        assertThat(err.toString()).contains("give both --from and --to");
        assertThat(run("fsm", "--flags", "STOP_COPY", "--from", "RUNNING", "--to", "FLYING")).isNotZero();
        assertThat(err.toString()).contains("unknown device state 'FLYING'");
    }
}
