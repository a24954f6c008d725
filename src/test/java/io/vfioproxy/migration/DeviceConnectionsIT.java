package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.StreamEndpoint;
import io.vfioproxy.testing.AgentProcess;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.RawPeer;
import io.vfioproxy.testing.Requests;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Migrations of several devices with a connection per device (feature {@code device-connections}): two real agents
 * on loopback, over TCP and WebSocket; a slow destination device holds back its own connection only; a failure on
 * a device's own connection rolls the whole migration back; JOINs that do not belong are refused.
 */
@ExtendWith(NoBufferLeaks.class)
class DeviceConnectionsIT {

    private static final long MIB = 1 << 20;

    private Vertx vertx;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    private static long deviceBytes(MigrationRecord record, String device) {
        MigrationStatus.DeviceBytes bytes = record.status().transfer().perDevice().get(device);
        return bytes == null ? 0 : bytes.total();
    }

    @ParameterizedTest
    @ValueSource(strings = {"tcp", "websocket"})
    void aSlowDestinationDeviceHoldsBackItsOwnConnectionOnly(String transport) {
        long size = 48 * MIB;
        // Every write to the slow device takes 500 ms: its connection stops being read after a few MiB.
        JsonObject slow = LoopbackAgent.simulated("slow", size, 3)
                .put("faults", new JsonObject().put("writeDelayMillis", 500));
        AgentVerticle dst = LoopbackAgent.named("dst").device(LoopbackAgent.simulated("fast", size, 2))
                .device(slow).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src").device(LoopbackAgent.simulated("fast", size, 1))
                .device(LoopbackAgent.simulated("slow", size, 4)).start(vertx);
        DeviceHandle fastSource = src.devices().find("fast");
        DeviceHandle slowSource = src.devices().find("slow");
        StreamEndpoint to = transport.equals("tcp") ? LoopbackAgent.endpoint(dst)
                : StreamEndpoint.parse("ws://127.0.0.1:" + dst.apiPort());

        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(to, Mode.STOP_COPY, "fast", "slow"));
        String id = started.record().id();
        long fastStream = Sim.device(fastSource).fullStreamSize();
        // The fast device's whole stream arrives while its slow sibling has taken a small part of its own: on one
        // shared connection the slow device's full queue would pause both.
        await("the fast device's stream arrives while the slow one lags").atMost(Duration.ofSeconds(60))
                .until(() -> {
                    MigrationRecord r = dst.migrations().find(id);
                    return r != null && deviceBytes(r, "fast") == fastStream;
                });
        assertThat(deviceBytes(dst.migrations().find(id), "slow")).isLessThan(size / 2);
        assertThat(dst.migrations().find(id).toJson().getInteger("connections")).isEqualTo(2);

        Sim.device(dst.devices().find("slow")).faults().clear();
        MigrationStatus done = started.completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(done.toJson().getInteger("connections")).isEqualTo(2);
        assertThat(done.transfer().dataBytes()).isEqualTo(fastStream + Sim.device(slowSource).fullStreamSize());
        assertThat(Sim.digest(dst.devices().find("fast"))).isEqualTo(Sim.digest(fastSource));
        assertThat(Sim.digest(dst.devices().find("slow"))).isEqualTo(Sim.digest(slowSource));
        await("the destination completes").atMost(Duration.ofSeconds(10)).until(() ->
                dst.migrations().find(id).status().outcome() == MigrationStatus.Outcome.COMPLETED);
        assertThat(dst.devices().find("slow").state().await()).isEqualTo(DeviceState.RUNNING);
    }

    @Test
    void preCopyOfThreeDevicesRunsOnThreeConnectionsAndOneCanBeTurnedOff() {
        long size = 8 * MIB;
        LoopbackAgent destination = LoopbackAgent.named("dst");
        LoopbackAgent source = LoopbackAgent.named("src");
        for (String d : List.of("a", "b", "c")) {
            destination.device(LoopbackAgent.simulated(d, size, 10 + d.charAt(0)));
            source.device(LoopbackAgent.simulated(d, size, d.charAt(0)));
        }
        AgentVerticle dst = destination.start(vertx);
        AgentVerticle src = source.start(vertx);
        MigrationStatus done = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY,
                "a", "b", "c")).completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(done.toJson().getInteger("connections")).isEqualTo(3);
        for (String d : List.of("a", "b", "c")) {
            assertThat(Sim.digest(dst.devices().find(d))).as(d).isEqualTo(Sim.digest(src.devices().find(d)));
        }

        // Back again on one shared connection, as agents configured without the feature do.
        AgentVerticle shared = LoopbackAgent.named("shared").set("migration", "connectionPerDevice", false)
                .device(LoopbackAgent.simulated("a", size, 20)).device(LoopbackAgent.simulated("b", size, 21))
                .start(vertx);
        MigrationStatus one = shared.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.STOP_COPY,
                "a", "b")).completion().await();
        assertThat(one.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(one.toJson().getInteger("connections")).isEqualTo(1);
        assertThat(Sim.digest(dst.devices().find("b"))).isEqualTo(Sim.digest(shared.devices().find("b")));
    }

    @Test
    void aWriteErrorOnASecondDevicesConnectionRollsTheWholeMigrationBack() {
        long size = 32 * MIB;
        JsonObject faulty = LoopbackAgent.simulated("b", size, 2).put("faults", new JsonObject()
                .put("failWriteAt", 5 * MIB).put("errno", "ENOSPC"));
        AgentVerticle dst = LoopbackAgent.named("dst").device(LoopbackAgent.simulated("a", size, 3))
                .device(faulty).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src").device(LoopbackAgent.simulated("a", size, 1))
                .device(LoopbackAgent.simulated("b", size, 4)).start(vertx);
        long aBefore = Sim.digest(dst.devices().find("a"));

        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst),
                Mode.STOP_COPY, "a", "b"));
        assertThatThrownBy(() -> started.completion().await())
                .hasMessageContaining("the destination aborted the migration")
                .hasMessageContaining("b: write(data_fd) failed in state RESUMING: ENOSPC");
        assertThat(src.devices().find("a").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(src.devices().find("b").state().await()).isEqualTo(DeviceState.RUNNING);
        await("the destination resets both devices").atMost(Duration.ofSeconds(10)).until(() -> {
            MigrationRecord r = dst.migrations().find(started.record().id());
            return r != null && r.status().outcome() == MigrationStatus.Outcome.FAILED
                    && r.toJson().containsKey("deviceState");
        });
        assertThat(dst.devices().find("a").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(dst.devices().find("b").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(dst.devices().find("a"))).isEqualTo(aBefore);
        assertThat(dst.devices().find("a").owner()).isNull();
        assertThat(dst.devices().find("b").owner()).isNull();
    }

    @Test
    void joinsThatDoNotBelongToTheMigrationAreRefused() {
        AgentVerticle dst = LoopbackAgent.named("dst").device(LoopbackAgent.simulated("a", 4 * MIB, 1))
                .device(LoopbackAgent.simulated("b", 4 * MIB, 2)).start(vertx);
        RawPeer control = RawPeer.connect(vertx, dst.streamPort());
        JsonArray devices = new JsonArray();
        for (String d : List.of("a", "b")) {
            DeviceHandle h = dst.devices().find(d);
            devices.add(new JsonObject().put("channel", devices.size()).put("sourceDevice", d).put("targetDevice", d)
                    .put("flags", "STOP_COPY,P2P,PRE_COPY").put("identity", h.identity().toJson()));
        }
        control.send(Frames.control(FrameType.HELLO, 0, new JsonObject().put("protocol", Frames.PROTOCOL_VERSION)
                .put("migration", "m-join").put("sourceAgent", "raw").put("chunkSize", 1 << 20)
                .put("features", new JsonArray().add("device-connections")).put("devices", devices), 0));
        JsonObject accept = control.await(FrameType.ACCEPT);
        assertThat(accept.getJsonArray("features")).containsExactly("device-connections");
        String token = accept.getString("joinToken");
        assertThat(token).hasSizeGreaterThanOrEqualTo(16);

        assertThat(join(dst, "m-join", 1, token + "x").getString("reason")).contains("a wrong token");
        assertThat(join(dst, "m-none", 1, token).getString("reason"))
                .contains("has no migration m-none awaiting a device connection");
        // Channel 0 is the control connection's own.
        assertThat(join(dst, "m-join", 0, token).getString("reason")).contains("is not waiting for a connection");
        RawPeer joined = RawPeer.connect(vertx, dst.streamPort());
        joined.send(Frames.control(FrameType.JOIN, 1, new JsonObject().put("migration", "m-join").put("channel", 1)
                .put("token", token), 0));
        assertThat(joined.await(FrameType.JOINED).getInteger("channel")).isEqualTo(1);
        assertThat(join(dst, "m-join", 1, token).getString("reason")).contains("it joined already");

        // The device connection lost before its device loaded fails the migration, and both devices are reset.
        joined.close();
        control.awaitClosed();
        await("the migration fails").atMost(Duration.ofSeconds(10)).until(() -> {
            MigrationRecord r = dst.migrations().find("m-join");
            return r.status().outcome() == MigrationStatus.Outcome.FAILED && r.toJson().containsKey("deviceState");
        });
        assertThat(dst.migrations().find("m-join").status().error()).contains("channel 1 from");
        assertThat(dst.devices().find("a").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(dst.devices().find("b").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(dst.devices().find("b").owner()).isNull();
    }

    @Test
    void theDestinationKilledInStopCopyLeavesEverySourceDeviceRunning(@TempDir Path dir) throws Exception {
        long size = 64 * MIB;
        AgentVerticle src = LoopbackAgent.named("src").device(LoopbackAgent.simulated("a", size, 1))
                .device(LoopbackAgent.simulated("b", size, 2)).start(vertx);
        // Destination devices slower than the link keep the migration in STOP_COPY for seconds.
        JsonObject slow = new JsonObject().put("writeDelayMillis", 50);
        JsonObject config = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("a", size, 3).put("faults", slow))
                .device(LoopbackAgent.simulated("b", size, 4).put("faults", slow)).config();
        MigrationService.Started started;
        try (AgentProcess dst = AgentProcess.start(dir, config)) {
            started = src.migrations().migrate(Requests.sameNames(new StreamEndpoint("127.0.0.1", dst.streamPort()),
                    Mode.STOP_COPY, "a", "b"));
            await("in stop-copy on two connections").atMost(Duration.ofSeconds(60)).until(() ->
                    started.record().status().phase() == Phase.STOP_COPY
                            && started.record().status().peers().connections() == 2);
            dst.kill();
        }
        await("the source gives up").atMost(Duration.ofSeconds(30)).until(() -> started.completion().isComplete());
        assertThat(started.record().status().outcome()).isEqualTo(MigrationStatus.Outcome.FAILED);
        assertThat(src.devices().find("a").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(src.devices().find("b").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(src.devices().find("a").owner()).isNull();
        assertThat(src.devices().find("b").owner()).isNull();
    }

    /** A JOIN on a connection of its own; returns the REFUSE it gets, once the agent closed the connection. */
    private JsonObject join(AgentVerticle dst, String migration, int channel, String token) {
        RawPeer peer = RawPeer.connect(vertx, dst.streamPort());
        peer.send(Frames.control(FrameType.JOIN, channel, new JsonObject().put("migration", migration)
                .put("channel", channel).put("token", token), 0));
        JsonObject refuse = peer.await(FrameType.REFUSE);
        peer.awaitClosed();
        return refuse;
    }
}
