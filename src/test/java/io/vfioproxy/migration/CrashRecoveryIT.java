package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vertx.ext.web.client.WebClientOptions;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.migration.MigrationStatus.Outcome;
import io.vfioproxy.testing.AgentProcess;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An agent SIGKILLed in the middle of a migration, in a JVM of its own, then started again on the same node (its
 * journal, its file-backed device): its peer gives up and leaves its device safe, and the restarted agent puts its
 * own device right and reports the migration that was cut short.
 */
class CrashRecoveryIT {

    private static final long MIB = 1 << 20;

    @TempDir
    Path dir;

    private Vertx vertx;
    private WebClient http;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        http = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1"));
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    /** The killed side's configuration: its journal and its device's state on the node, in {@code dir}. */
    private JsonObject node(String name, long size, long seed, JsonObject deviceExtras) {
        JsonObject device = LoopbackAgent.simulated("sim0", size, seed)
                .put("stateFile", dir.resolve(name + "-sim0.state").toString()).mergeIn(deviceExtras);
        return LoopbackAgent.named(name).journal(dir.resolve(name + "-journal")).device(device)
                .merge("migration", new JsonObject().put("progressTimeoutMillis", 5000)).config();
    }

    private JsonObject get(AgentProcess agent, String path) {
        HttpResponse<Buffer> r = http.get(agent.apiPort(), "127.0.0.1", path).send().await();
        assertThat(r.statusCode()).as(r.bodyAsString()).isEqualTo(200);
        return r.bodyAsJsonObject();
    }

    private String phaseOf(AgentProcess agent, String id) {
        return get(agent, "/v1/migrations/" + id).getString("phase");
    }

    /** The digest of the device's state as the file holds it, once no agent has it open. */
    private long digestOnDisk(String name, long size) {
        SimulatedDevice d = SimulatedDevice.builder("sim0", size).pageSize(LoopbackAgent.PAGE)
                .stateFile(dir.resolve(name + "-sim0.state")).build();
        long digest = d.stateDigest();
        d.close();
        return digest;
    }

    private static long freshDigest(long size, long seed) {
        return SimulatedDevice.builder("sim0", size).pageSize(LoopbackAgent.PAGE).seed(seed).build().stateDigest();
    }

    /** After the restart: the device back in {@code state} and the cut migration reported. */
    private void assertRecovered(JsonObject config, String id, String state, String phase) throws Exception {
        try (AgentProcess again = AgentProcess.start(dir, config)) {
            assertThat(get(again, "/v1/devices/sim0").getString("state")).isEqualTo(state);
            JsonObject m = get(again, "/v1/migrations/" + id);
            assertThat(m.getString("outcome")).isEqualTo("failed");
            assertThat(m.getString("error")).contains("stopped during this migration, in phase " + phase);
        }
    }

    private String startOn(AgentProcess source, int destinationPort, String mode, String switchover) {
        HttpResponse<Buffer> r = http.post(source.apiPort(), "127.0.0.1", "/v1/migrations").sendJsonObject(
                new JsonObject().put("device", "sim0").put("destination", "127.0.0.1:" + destinationPort)
                        .put("mode", mode).put("switchover", switchover)).await();
        assertThat(r.statusCode()).as(r.bodyAsString()).isEqualTo(201);
        return r.bodyAsJsonObject().getString("id");
    }

    private MigrationRecord destinationRecord(AgentVerticle dst, String id) {
        await("the destination ends its side").atMost(Duration.ofSeconds(30)).until(() -> {
            MigrationRecord r = dst.migrations().find(id);
            return r != null && r.status().outcome() != Outcome.ACTIVE && r.toJson().containsKey("deviceState");
        });
        return dst.migrations().find(id);
    }

    @Test
    void theSourceKilledInPrecopyRunsItsDeviceAgainAfterItsRestart() throws Exception {
        long size = 16 * MIB;
        AgentVerticle dst = LoopbackAgent.named("dst").device(LoopbackAgent.simulated("sim0", size, 2)).start(vertx);
        long targetBefore = Sim.digest(dst.devices().find("sim0"));
        JsonObject config = node("src", size, 1, new JsonObject());
        String id;
        try (AgentProcess src = AgentProcess.start(dir, config)) {
            id = startOn(src, dst.streamPort(), "precopy", "manual");
            await("held before its switchover").atMost(Duration.ofSeconds(60))
                    .until(() -> "READY_FOR_SWITCHOVER".equals(phaseOf(src, id)));
            assertThat(get(src, "/v1/devices/sim0").getString("state")).isEqualTo("PRE_COPY");
            src.kill();
        }
        MigrationRecord cut = destinationRecord(dst, id);
        assertThat(cut.status().outcome()).isEqualTo(Outcome.FAILED);
        assertThat(dst.devices().find("sim0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(dst.devices().find("sim0"))).isEqualTo(targetBefore);

        assertRecovered(config, id, "RUNNING", "READY_FOR_SWITCHOVER");
        assertThat(digestOnDisk("src", size)).isEqualTo(freshDigest(size, 1));
    }

    @Test
    void theSourceKilledInStopCopyRunsItsDeviceAgainAfterItsRestart() throws Exception {
        long size = 64 * MIB;
        // A destination device slower than the link keeps the source in STOP_COPY for seconds.
        AgentVerticle dst = LoopbackAgent.named("dst").device(LoopbackAgent.simulated("sim0", size, 2)
                .put("faults", new JsonObject().put("writeDelayMillis", 50))).start(vertx);
        JsonObject config = node("src", size, 1, new JsonObject());
        String id;
        try (AgentProcess src = AgentProcess.start(dir, config)) {
            id = startOn(src, dst.streamPort(), "stop-copy", "auto");
            await("in stop-copy").atMost(Duration.ofSeconds(60))
                    .until(() -> "STOP_COPY".equals(phaseOf(src, id)));
            src.kill();
        }
        assertThat(destinationRecord(dst, id).status().outcome()).isEqualTo(Outcome.FAILED);
        assertThat(dst.devices().find("sim0").state().await()).isEqualTo(DeviceState.RUNNING);

        assertRecovered(config, id, "RUNNING", "STOP_COPY");
        assertThat(digestOnDisk("src", size)).isEqualTo(freshDigest(size, 1));
    }

    @Test
    void theDestinationKilledInPrecopyIsResetAfterItsRestart() throws Exception {
        long size = 16 * MIB;
        AgentVerticle src = LoopbackAgent.named("src").device(LoopbackAgent.simulated("sim0", size, 1)).start(vertx);
        JsonObject config = node("dst", size, 2, new JsonObject());
        MigrationService.Started started;
        try (AgentProcess dst = AgentProcess.start(dir, config)) {
            started = src.migrations().migrate(new MigrationRequest("sim0",
                    new io.vfioproxy.stream.StreamEndpoint("127.0.0.1", dst.streamPort()), "sim0", 0)
                    .withMode(MigrationRequest.Mode.PRECOPY).withSwitchover(true, 300, 60_000));
            await("held before its switchover").atMost(Duration.ofSeconds(60))
                    .until(() -> started.record().status().phase() == Phase.READY_FOR_SWITCHOVER);
            assertThat(get(dst, "/v1/devices/sim0").getString("state")).isEqualTo("RESUMING");
            dst.kill();
        }
        await("the source gives up").atMost(Duration.ofSeconds(30)).until(() -> started.completion().isComplete());
        assertThat(started.record().status().outcome()).isEqualTo(Outcome.FAILED);
        assertThat(src.devices().find("sim0").state().await()).isEqualTo(DeviceState.RUNNING);

        assertRecovered(config, started.record().id(), "RUNNING", "RESUMING");
        assertThat(digestOnDisk("dst", size)).isEqualTo(freshDigest(size, 2));
    }

    @Test
    void theDestinationKilledInStopCopyIsResetAfterItsRestart() throws Exception {
        long size = 64 * MIB;
        AgentVerticle src = LoopbackAgent.named("src").device(LoopbackAgent.simulated("sim0", size, 1)).start(vertx);
        JsonObject config = node("dst", size, 2, new JsonObject().put("faults",
                new JsonObject().put("writeDelayMillis", 50)));
        MigrationService.Started started;
        try (AgentProcess dst = AgentProcess.start(dir, config)) {
            started = src.migrations().migrate(new MigrationRequest("sim0",
                    new io.vfioproxy.stream.StreamEndpoint("127.0.0.1", dst.streamPort()), "sim0", 0)
                    .withMode(MigrationRequest.Mode.STOP_COPY));
            await("in stop-copy").atMost(Duration.ofSeconds(60))
                    .until(() -> started.record().status().phase() == Phase.STOP_COPY);
            dst.kill();
        }
        await("the source gives up").atMost(Duration.ofSeconds(30)).until(() -> started.completion().isComplete());
        assertThat(started.record().status().outcome()).isEqualTo(Outcome.FAILED);
        assertThat(src.devices().find("sim0").state().await()).isEqualTo(DeviceState.RUNNING);

        assertRecovered(config, started.record().id(), "RUNNING", "RESUMING");
        assertThat(digestOnDisk("dst", size)).isEqualTo(freshDigest(size, 2));
    }
}
