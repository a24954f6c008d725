package io.vfioproxy.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentConfig;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The demo and migrate commands, run as a user runs them. */
class CommandLineIT {

    private record Run(int exit, String out) {
    }

    /** Runs {@code command} with what it prints to standard output (or, with {@code errors}, standard error). */
    private static Run capture(Callable<Integer> command, boolean errors) throws Exception {
        PrintStream saved = errors ? System.err : System.out;
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        PrintStream into = new PrintStream(bytes, true, StandardCharsets.UTF_8);
        if (errors) {
            System.setErr(into);
        } else {
            System.setOut(into);
        }
        try {
            int exit = command.call();
            return new Run(exit, bytes.toString(StandardCharsets.UTF_8));
        } finally {
            if (errors) {
                System.setErr(saved);
            } else {
                System.setOut(saved);
            }
        }
    }

    private static Run capture(Callable<Integer> command) throws Exception {
        return capture(command, false);
    }

    @Test
    void anAgentThatCannotJoinItsClusterSaysWhyAndStops(@TempDir Path dir) throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            int port = taken.getLocalPort();
            JsonObject config = new JsonObject()
                    .put("agent", new JsonObject().put("name", "node-z"))
                    .put("security", new JsonObject().put("insecure", true))
                    .put("stream", new JsonObject().put("host", "127.0.0.1").put("port", 0))
                    .put("api", new JsonObject().put("host", "127.0.0.1").put("port", 0))
                    .put("devices", new JsonArray())
                    .put("cluster", new JsonObject().put("enabled", true).put("host", "127.0.0.1").put("port", port)
                            .put("members", new JsonArray().add("127.0.0.1:" + port)).put("eventBusPort", 0));
            Path file = dir.resolve("agent.json");
            Files.writeString(file, config.encodePrettily());
            Run run = capture(() -> Main.run("agent", "--config", file.toString()), true);
            assertThat(run.exit()).isEqualTo(1);
            assertThat(run.out()).contains("agent failed to start: agent node-z could not join cluster "
                    + "'vfio-migration-proxy' (cluster.port " + port).contains("already in use");
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

    @Test
    void twoSecureAgentsFromCertsInitMigrateAsTheReadmeShows(@TempDir Path dir) throws Exception {
        Run certs = capture(() -> Main.run("certs", "init", "--out", dir.toString(), "--agents", "node-a,node-b"));
        assertThat(certs.exit()).as(certs.out()).isZero();
        // Each agent's environment as certs init prints it: VMP_ lines after "# agent NAME:".
        Map<String, Map<String, String>> env = new HashMap<>();
        Map<String, String> current = null;
        for (String line : certs.out().split("\n")) {
            if (line.startsWith("# agent ")) {
                current = new HashMap<>();
                env.put(line.substring(8, line.indexOf(' ', 8)), current);
            } else if (line.startsWith("# ")) {
                current = null;
            } else if (current != null && line.startsWith("VMP_")) {
                current.put(line.substring(0, line.indexOf('=')), line.substring(line.indexOf('=') + 1));
            }
        }
        assertThat(env).containsOnlyKeys("node-a", "node-b");
        assertThat(certs.out()).contains("VMP_CA=" + dir.resolve("ca.crt"))
                .contains("VMP_TOKEN_FILE=" + dir.resolve("control.token"));
        Vertx vertx = Vertx.vertx();
        try {
            AgentVerticle a = secureAgent(vertx, env.get("node-a"), 1);
            AgentVerticle b = secureAgent(vertx, env.get("node-b"), 2);
            String agentA = "https://127.0.0.1:" + a.apiPort();
            Run migrated = capture(() -> Main.run("migrate", "--agent", agentA, "--ca", dir.resolve("ca.crt")
                    .toString(), "--token-file", dir.resolve("control.token").toString(), "--device", "sim0", "--to",
                    "127.0.0.1:" + b.streamPort()));
            assertThat(migrated.exit()).as(migrated.out()).isZero();
            assertThat(migrated.out()).contains("\"outcome\" : \"completed\"");
            assertThat(Sim.digest(b.devices().find("sim0"))).isEqualTo(Sim.digest(a.devices().find("sim0")));

            Run noToken = captureAll(() -> Main.run("status", "--agent", agentA, "--ca",
                    dir.resolve("ca.crt").toString()));
            assertThat(noToken.exit()).isNotZero();
            assertThat(noToken.out()).contains("401").contains("needs a bearer token");
            Run read = captureAll(() -> Main.run("migrate", "--agent", agentA, "--ca", dir.resolve("ca.crt")
                    .toString(), "--token-file", dir.resolve("read.token").toString(), "--device", "sim0", "--to",
                    "127.0.0.1:" + b.streamPort()));
            assertThat(read.exit()).isNotZero();
            assertThat(read.out()).contains("403").contains("needs a control token");
        } finally {
            vertx.close().await();
        }
    }

    /** An agent on loopback configured, as the README's, by the environment certs init printed for it. */
    private static AgentVerticle secureAgent(Vertx vertx, Map<String, String> env, long seed) {
        JsonObject config = LoopbackAgent.named("unset").device(LoopbackAgent.simulated("sim0", 16 << 20, seed))
                .config();
        config.remove("security");
        JsonObject merged = AgentConfig.applyEnvironment(AgentConfig.defaults().mergeIn(config, true), env);
        AgentVerticle agent = new AgentVerticle(merged);
        vertx.deployVerticle(agent).await();
        return agent;
    }

    /** Like {@link #capture}, with what the command writes to stderr too. */
    private static Run captureAll(Callable<Integer> command) throws Exception {
        PrintStream saved = System.err;
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        System.setErr(new PrintStream(bytes, true, StandardCharsets.UTF_8));
        try {
            Run run = capture(command);
            return new Run(run.exit(), run.out() + bytes.toString(StandardCharsets.UTF_8));
        } finally {
            System.setErr(saved);
        }
    }
}
