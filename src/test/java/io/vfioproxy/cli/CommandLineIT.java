package io.vfioproxy.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.Test;

/** The demo and migrate commands, run as a user runs them. */
class CommandLineIT {

    private record Run(int exit, String out) {
    }

    private static Run capture(Callable<Integer> command) throws Exception {
        PrintStream saved = System.out;
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        System.setOut(new PrintStream(bytes, true, StandardCharsets.UTF_8));
        try {
            int exit = command.call();
            return new Run(exit, bytes.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(saved);
        }
    }

    @Test
    void demoMigratesWithPreCopyAndVerifies() throws Exception {
        Run run = capture(() -> Main.run("demo", "--size", "128MiB"));
        assertThat(run.exit()).as(run.out()).isZero();
        assertThat(run.out()).contains("verified: yes").containsPattern("downtime: \\d+ ms")
                .containsPattern("throughput: \\d+\\.\\d\\d GB/s").contains("bytes: ")
                .contains("switchover: converged after").contains("pre-copy cut the downtime to");
    }

    @Test
    void demoMigratesWithStopCopyAndVerifies() throws Exception {
        Run run = capture(() -> Main.run("demo", "--size", "64MiB", "--stop-copy"));
        assertThat(run.exit()).as(run.out()).isZero();
        assertThat(run.out()).contains("verified: yes").containsPattern("downtime: \\d+ ms")
                .contains("stop-copy: the device was stopped for the whole transfer");
    }

    @Test
    void demoSaysWhyPreCopyDidNotConverge() throws Exception {
        Run run = capture(() -> Main.run("demo", "--size", "64MiB", "--dirty-rate", "8GiB", "--downtime-limit", "0",
                "--precopy-budget", "300"));
        assertThat(run.exit()).as(run.out()).isZero();
        assertThat(run.out()).contains("switchover: pre-copy budget of 300 ms ran out").contains("verified: yes");
    }

    @Test
    void migrateFollowsAMigrationThroughTheApi() throws Exception {
        Vertx vertx = Vertx.vertx();
        try {
            AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("sim0", 32 << 20, 2))
                .device(LoopbackAgent.simulated("sim1", 16 << 20, 3)).start(vertx);
            AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("sim0", 32 << 20, 1))
                .device(LoopbackAgent.simulated("sim1", 16 << 20, 4)).start(vertx);
            Run ok = capture(() -> Main.run("migrate", "--agent", "http://127.0.0.1:" + src.apiPort(),
                    "--device", "sim0", "--to", "127.0.0.1:" + dst.streamPort()));
            assertThat(ok.exit()).as(ok.out()).isZero();
            assertThat(ok.out()).contains("\"outcome\" : \"completed\"");
            assertThat(dst.devices().find("sim0").state().await()).isEqualTo(DeviceState.RUNNING);
            assertThat(Sim.digest(dst.devices().find("sim0"))).isEqualTo(Sim.digest(src.devices().find("sim0")));

            Run pair = capture(() -> Main.run("migrate", "--agent", "http://127.0.0.1:" + src.apiPort(),
                    "--device", "sim0", "--device", "sim1", "--target-device", "sim0", "--target-device", "sim1",
                    "--mode", "stop-copy", "--to", "127.0.0.1:" + dst.streamPort()));
            assertThat(pair.exit()).as(pair.out()).isZero();
            assertThat(pair.out()).contains("\"device\" : \"sim0,sim1\"").contains("\"mode\" : \"stop-copy\"");
            assertThat(Sim.digest(dst.devices().find("sim1"))).isEqualTo(Sim.digest(src.devices().find("sim1")));

            Run refused = capture(() -> Main.run("migrate", "--agent", "http://127.0.0.1:" + src.apiPort(),
                    "--device", "nope", "--to", "127.0.0.1:" + dst.streamPort()));
            assertThat(refused.exit()).isEqualTo(2);

            Run failed = capture(() -> Main.run("migrate", "--agent", "http://127.0.0.1:" + dst.apiPort(),
                    "--device", "sim0", "--to", "127.0.0.1:1"));
            assertThat(failed.exit()).isEqualTo(1);
            assertThat(failed.out()).contains("cannot connect to the destination 127.0.0.1:1");
            assertThat(dst.devices().find("sim0").state().await()).isEqualTo(DeviceState.RUNNING);
        } finally {
            vertx.close().await();
        }
    }
}
