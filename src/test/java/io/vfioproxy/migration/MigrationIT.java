package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.netty.util.internal.PlatformDependent;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.api.Events;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.StreamEndpoint;
import io.vfioproxy.testing.EventLog;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.RawPeer;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Two real agents on loopback, migrating simulated devices over TCP. */
@ExtendWith(NoBufferLeaks.class)
class MigrationIT {

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

    private static long directMemory() {
        long netty = Math.max(0, PlatformDependent.usedDirectMemory());
        long nio = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
                .filter(p -> p.getName().equals("direct")).mapToLong(BufferPoolMXBean::getMemoryUsed).sum();
        return netty + nio;
    }

    private List<String> arcs(List<JsonObject> events, String agent) {
        return events.stream().filter(e -> e.getString("agent").equals(agent))
                .map(e -> e.getString("from") + ">" + e.getString("to")).toList();
    }

    @Test
    void migratesALargeStateThatArrivesByteForByte() {
        long size = 512 * MIB;
        List<JsonObject> deviceEvents = EventLog.record(vertx, Events.DEVICE_STATE);
        List<JsonObject> migrationEvents = EventLog.record(vertx, Events.MIGRATION);
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", size, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", size, 1)).start(vertx);
        DeviceHandle source = src.devices().find("gpu0");
        DeviceHandle target = dst.devices().find("gpu0");
        Sim.device(source).dirtyPages(10_000, 3);
        assertThat(Sim.digest(source)).isNotEqualTo(Sim.digest(target));

        long idle = directMemory();
        AtomicLong peak = new AtomicLong(idle);
        long sampler = vertx.setPeriodic(5, id -> peak.accumulateAndGet(directMemory(), Math::max));
        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst), "gpu0", 0));
        MigrationStatus record = started.completion().await();
        vertx.cancelTimer(sampler);

        assertThat(record.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(record.ending().destinationStarted()).isTrue();
        assertThat(record.transfer().dataBytes()).isEqualTo(Sim.device(source).fullStreamSize());
        assertThat(record.downtimeMillis()).isPositive();
        assertThat(source.state().await()).isEqualTo(DeviceState.STOP);
        assertThat(target.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(target)).isEqualTo(Sim.digest(source));
        await("the destination's record ends").atMost(Duration.ofSeconds(15))
                .until(() -> dst.migrations().find(record.id()).status().outcome() == MigrationStatus.Outcome.COMPLETED);
        MigrationStatus.Transfer received = dst.migrations().find(record.id()).status().transfer();
        assertThat(received.stopCopyBytes()).isEqualTo(record.transfer().dataBytes());
        assertThat(received.precopyBytes()).isZero();
        assertThat(received.iterations()).isZero();
        assertThat(source.owner()).isNull();
        assertThat(target.owner()).isNull();
        // Memory stays flat: a few chunks and the socket queues, not the state.
        assertThat(peak.get() - idle).as("direct memory above idle").isLessThan(48 * MIB);

        await("every state event arrives").atMost(Duration.ofSeconds(5)).until(() -> deviceEvents.size() >= 10);
        assertThat(arcs(deviceEvents, "src")).containsExactly("RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP",
                "STOP>STOP_COPY", "STOP_COPY>STOP");
        assertThat(arcs(deviceEvents, "dst")).containsExactly("RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP",
                "STOP>RESUMING", "RESUMING>STOP", "STOP>RUNNING_P2P", "RUNNING_P2P>RUNNING");
        JsonObject stopCopy = deviceEvents.get(2);
        assertThat(stopCopy.getString("device")).isEqualTo("gpu0");
        assertThat(stopCopy.getString("cause")).contains(record.id());
        assertThat(stopCopy.getString("timestamp")).isNotBlank();
        await("both completion events").atMost(Duration.ofSeconds(5)).until(() -> migrationEvents.stream()
                .filter(e -> e.getString("event").equals("completed")).count() == 2);
    }

    @Test
    void overTheWebSocketTransportASlowDestinationHoldsTheFramesItNeedsAndNothingMore() {
        long size = 64 * MIB;
        // Each write waits: the destination's device lags, so the frames it holds queue up behind it, retained
        // slices of the WebSocket frames Netty decoded (no heap copy), until the input pauses.
        AgentVerticle dst = LoopbackAgent.named("dst").device(LoopbackAgent.simulated("gpu0", size, 2)
                .put("faults", new JsonObject().put("writeDelayMillis", 2))).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", size, 1)).start(vertx);
        DeviceHandle source = src.devices().find("gpu0");
        DeviceHandle target = dst.devices().find("gpu0");
        Sim.device(source).dirtyPages(1_000, 5);

        long idle = directMemory();
        AtomicLong peak = new AtomicLong(idle);
        long sampler = vertx.setPeriodic(5, id -> peak.accumulateAndGet(directMemory(), Math::max));
        StreamEndpoint ws = StreamEndpoint.parse("ws://127.0.0.1:" + dst.apiPort());
        MigrationStatus record = src.migrations().migrate(new MigrationRequest("gpu0", ws, "gpu0", 0)).completion()
                .await();
        vertx.cancelTimer(sampler);

        assertThat(record.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(record.peers().peer()).startsWith("ws://");
        assertThat(Sim.digest(target)).isEqualTo(Sim.digest(source));
        assertThat(target.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(peak.get() - idle).as("direct memory above idle").isLessThan(48 * MIB);
    }

    @Test
    void aConnectionCutMidwayLeavesTheSourceRunningAndResetsTheDestination() {
        long size = 256 * MIB;
        List<JsonObject> migrationEvents = EventLog.record(vertx, Events.MIGRATION);
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("nic0", size, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("nic0", size, 1)).start(vertx);
        long before = Sim.digest(src.devices().find("nic0"));
        long targetBefore = Sim.digest(dst.devices().find("nic0"));
        int relay = cuttingRelay(LoopbackAgent.endpoint(dst), 64 * MIB);

        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("nic0", new StreamEndpoint("127.0.0.1", relay), "nic0", 0));
        assertThatThrownBy(() -> started.completion().await()).hasMessageContaining("the connection to 127.0.0.1:");

        assertThat(src.devices().find("nic0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(src.devices().find("nic0"))).isEqualTo(before);
        await("the destination gives up").atMost(Duration.ofSeconds(10)).until(() -> dst.migrations().all().stream()
                .anyMatch(r -> r.status().outcome() == MigrationStatus.Outcome.FAILED));
        MigrationRecord failed = dst.migrations().find(started.record().id());
        assertThat(failed.status().error()).contains("truncated stream").contains("in frame");
        assertThat(failed.toJson().getString("deviceState")).isEqualTo("RUNNING");
        assertThat(dst.devices().find("nic0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(dst.devices().find("nic0"))).isEqualTo(targetBefore);
        assertThat(migrationEvents).filteredOn(e -> e.getString("event").equals("failed")).hasSize(2);
        assertThat(src.devices().find("nic0").owner()).isNull();
        assertThat(dst.devices().find("nic0").owner()).isNull();
    }

    @ParameterizedTest(name = "cut {0}")
    @ValueSource(strings = {"before the HELLO", "inside the HELLO", "after the handshake", "in the middle of the data",
        "after the last data"})
    void aConnectionCutInAnyPhaseLeavesBothDevicesAsTheyWere(String where) {
        long size = 8 * MIB;
        AgentVerticle dst = LoopbackAgent.named("dst").device(LoopbackAgent.simulated("gpu0", size, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src").device(LoopbackAgent.simulated("gpu0", size, 1)).start(vertx);
        DeviceHandle source = src.devices().find("gpu0");
        DeviceHandle target = dst.devices().find("gpu0");
        long before = Sim.digest(source);
        long targetBefore = Sim.digest(target);
        long stream = Sim.device(source).fullStreamSize();
        long cutAt = switch (where) {
            case "before the HELLO" -> 0;
            case "inside the HELLO" -> 40;
            case "after the handshake" -> 600;
            case "in the middle of the data" -> stream / 2;
            default -> stream;
        };
        int relay = cuttingRelay(LoopbackAgent.endpoint(dst), cutAt);
        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("gpu0",
                new StreamEndpoint("127.0.0.1", relay), "gpu0", 0));
        assertThatThrownBy(() -> started.completion().await()).isInstanceOf(MigrationException.class);
        assertThat(source.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(source)).isEqualTo(before);
        await("the destination is back as it was").atMost(Duration.ofSeconds(20)).until(() -> {
            MigrationRecord r = dst.migrations().find(started.record().id());
            return target.owner() == null && (r == null || r.status().outcome() != MigrationStatus.Outcome.ACTIVE);
        });
        assertThat(target.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(target)).isEqualTo(targetBefore);
        assertThat(source.owner()).isNull();
    }

    /** A TCP relay that closes both sides once {@code limit} bytes went from source to destination. */
    private int cuttingRelay(StreamEndpoint target, long limit) {
        NetClient client = vertx.createNetClient();
        NetServer server = vertx.createNetServer().connectHandler(in -> {
            in.pause();
            client.connect(target.port(), target.host()).onSuccess(out -> {
                AtomicLong forwarded = new AtomicLong();
                in.handler(buf -> {
                    if (forwarded.addAndGet(buf.length()) > limit) {
                        in.close();
                        out.close();
                        return;
                    }
                    out.write(buf);
                });
                out.handler(in::write);
                in.resume();
            });
        });
        return server.listen(0, "127.0.0.1").await().actualPort();
    }

    @Test
    void aDestinationThatStopsReadingFailsTheMigrationWithFlatMemory() {
        AgentVerticle src = LoopbackAgent.named("src").merge("migration", new JsonObject().put("progressTimeoutMillis", 1500))
                .device(LoopbackAgent.simulated("gpu0", 1024 * MIB, 1)).start(vertx);
        AtomicReference<NetSocket> stalled = new AtomicReference<>();
        int port = stallingDestination(stalled);

        long idle = directMemory();
        AtomicLong peak = new AtomicLong(idle);
        long sampler = vertx.setPeriodic(5, id -> peak.accumulateAndGet(directMemory(), Math::max));
        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("gpu0", new StreamEndpoint("127.0.0.1", port), "gpu0", 0));
        assertThatThrownBy(() -> started.completion().await()).hasMessageContaining("no progress")
                .hasMessageContaining("STOP_COPY");
        vertx.cancelTimer(sampler);

        MigrationStatus record = started.record().status();
        assertThat(record.outcome()).isEqualTo(MigrationStatus.Outcome.FAILED);
        assertThat(record.ending().deviceState()).isEqualTo("RUNNING");
        assertThat(src.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        // The source read only what the socket took: a sliver of the 1 GiB state, bounded by queues and TCP buffers.
        assertThat(record.transfer().dataBytes()).isGreaterThan(0).isLessThan(64 * MIB);
        assertThat(peak.get() - idle).as("direct memory above idle").isLessThan(48 * MIB);
        assertThat(stalled.get()).isNotNull();
        // Vert.x keeps reads that arrive while a socket is paused as pooled buffers it does not release on close.
        stalled.get().handler(ignored -> { }).resume().close().await();
    }

    /** Accepts the HELLO, answers ACCEPT, then never reads again. */
    private int stallingDestination(AtomicReference<NetSocket> stalled) {
        NetServer server = vertx.createNetServer().connectHandler(socket -> {
            FrameWriter writer = new FrameWriter(socket);
            FrameDecoder decoder = new FrameDecoder(Limits.DEFAULT, RawPeer.controlOnly((type, body) -> {
                if (type == FrameType.HELLO) {
                    writer.control(FrameType.ACCEPT, 0, new JsonObject().put("protocol", 1));
                    socket.pause();
                    stalled.set(socket);
                }
            }));
            socket.handler(buf -> {
                if (stalled.get() == null) {
                    decoder.feed(buf);
                }
            });
        });
        return server.listen(0, "127.0.0.1").await().actualPort();
    }

    @Test
    void aSourceDeviceReadErrorRollsBothSidesBack() {
        long size = 64 * MIB;
        JsonObject faulty = LoopbackAgent.simulated("acc0", size, 1).put("faults", new JsonObject().put("failReadAt", 20 * MIB)
                .put("errno", "EIO"));
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("acc0", size, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(faulty).start(vertx);

        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("acc0", LoopbackAgent.endpoint(dst), "acc0", 0));
        assertThatThrownBy(() -> started.completion().await())
                .hasMessageContaining("acc0: read(data_fd) failed in state STOP_COPY: EIO");
        assertThat(src.devices().find("acc0").state().await()).isEqualTo(DeviceState.RUNNING);
        await("the destination resets").atMost(Duration.ofSeconds(10)).until(() ->
                dst.migrations().find(started.record().id()) != null
                        && dst.migrations().find(started.record().id()).status().outcome() == MigrationStatus.Outcome.FAILED
                        && dst.migrations().find(started.record().id()).toJson().containsKey("deviceState"));
        assertThat(dst.migrations().find(started.record().id()).status().error())
                .contains("the source aborted the migration").contains("EIO");
        assertThat(dst.devices().find("acc0").state().await()).isEqualTo(DeviceState.RUNNING);
    }

    @Test
    void aDestinationDeviceWriteErrorAbortsAndTheSourceRunsOn() {
        long size = 64 * MIB;
        JsonObject faulty = LoopbackAgent.simulated("acc0", size, 2).put("faults", new JsonObject().put("failWriteAt", 10 * MIB)
                .put("errno", "ENOSPC"));
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(faulty).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("acc0", size, 1)).start(vertx);
        long targetBefore = Sim.digest(dst.devices().find("acc0"));

        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("acc0", LoopbackAgent.endpoint(dst), "acc0", 0));
        assertThatThrownBy(() -> started.completion().await())
                .hasMessageContaining("the destination aborted the migration")
                .hasMessageContaining("acc0: write(data_fd) failed in state RESUMING: ENOSPC");
        assertThat(src.devices().find("acc0").state().await()).isEqualTo(DeviceState.RUNNING);
        await("the destination resets its device").atMost(Duration.ofSeconds(10)).until(() -> {
            MigrationRecord r = dst.migrations().find(started.record().id());
            return r != null && r.status().outcome() == MigrationStatus.Outcome.FAILED && r.toJson().containsKey("deviceState");
        });
        assertThat(dst.migrations().find(started.record().id()).toJson().getString("deviceState")).isEqualTo("RUNNING");
        assertThat(dst.devices().find("acc0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(dst.devices().find("acc0"))).isEqualTo(targetBefore);
    }

    @Test
    void aSourceAgentThatStopsMidwayResumesItsDeviceFirstAndTheDestinationResetsHolding() {
        long size = 256 * MIB;
        // The destination device absorbs 1 MiB per 20 ms, far below the link: its connection stays paused.
        JsonObject slow = LoopbackAgent.simulated("nic0", size, 2).put("faults", new JsonObject().put("writeDelayMillis", 20));
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(slow).start(vertx);
        long targetBefore = Sim.digest(dst.devices().find("nic0"));
        Vertx sourceNode = Vertx.vertx();
        try {
            AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("nic0", size, 1)).start(sourceNode);
            MigrationService.Started started = src.migrations().migrate(new MigrationRequest("nic0", LoopbackAgent.endpoint(dst), "nic0", 0));
            await("the destination lags behind").atMost(Duration.ofSeconds(20)).until(() -> {
                MigrationRecord r = dst.migrations().find(started.record().id());
                return r != null && r.status().transfer().dataBytes() >= 8 * MIB;
            });
            assertThat(started.record().status().transfer().dataBytes()).as("the source ran ahead of the destination device")
                    .isGreaterThan(dst.migrations().find(started.record().id()).status().transfer().dataBytes());
            sourceNode.close().await();
            // The agent ended the migration before closing its device: the device was back in RUNNING when it closed.
            assertThat(started.record().status().outcome()).isEqualTo(MigrationStatus.Outcome.FAILED);
            assertThat(started.record().status().error()).contains("agent src is shutting down");
            assertThat(started.record().toJson().getString("deviceState")).isEqualTo("RUNNING");

            await("the destination gives up").atMost(Duration.ofSeconds(20)).until(() -> {
                MigrationRecord r = dst.migrations().find(started.record().id());
                return r.status().outcome() == MigrationStatus.Outcome.FAILED && r.toJson().containsKey("deviceState");
            });
            assertThat(dst.migrations().find(started.record().id()).toJson().getString("deviceState"))
                    .isEqualTo("RUNNING");
            assertThat(dst.devices().find("nic0").state().await()).isEqualTo(DeviceState.RUNNING);
            assertThat(Sim.digest(dst.devices().find("nic0"))).isEqualTo(targetBefore);
            assertThat(dst.devices().find("nic0").owner()).isNull();
        } finally {
            sourceNode.close().await();
        }
    }

    @Test
    void aDestinationAgentThatStopsMidwayResetsItsDeviceFirstAndTheSourceRunsOn() {
        long size = 256 * MIB;
        JsonObject slow = LoopbackAgent.simulated("nic0", size, 2).put("faults", new JsonObject().put("writeDelayMillis", 20));
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("nic0", size, 1)).start(vertx);
        long before = Sim.digest(src.devices().find("nic0"));
        Vertx destinationNode = Vertx.vertx();
        try {
            AgentVerticle dst = LoopbackAgent.named("dst")
                .device(slow).start(destinationNode);
            MigrationService.Started started = src.migrations().migrate(new MigrationRequest("nic0", LoopbackAgent.endpoint(dst), "nic0", 0));
            await("the destination device is loading").atMost(Duration.ofSeconds(20)).until(() -> {
                MigrationRecord r = dst.migrations().find(started.record().id());
                return r != null && r.status().transfer().dataBytes() >= 8 * MIB;
            });
            MigrationRecord atDestination = dst.migrations().find(started.record().id());
            destinationNode.close().await();

            assertThat(atDestination.status().outcome()).isEqualTo(MigrationStatus.Outcome.FAILED);
            assertThat(atDestination.status().error()).contains("agent dst is shutting down");
            assertThat(atDestination.toJson().getString("deviceState")).isEqualTo("RUNNING");
            assertThatThrownBy(() -> started.completion().await())
                    .hasMessageContaining("the destination aborted the migration: agent dst is shutting down");
            assertThat(src.devices().find("nic0").state().await()).isEqualTo(DeviceState.RUNNING);
            assertThat(Sim.digest(src.devices().find("nic0"))).isEqualTo(before);
            assertThat(src.devices().find("nic0").owner()).isNull();
        } finally {
            destinationNode.close().await();
        }
    }

    @Test
    void aDeviceAlreadyMigratingIsRefused() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 256 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 256 * MIB, 1)).start(vertx);
        MigrationService.Started first = src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst), "gpu0", 0));
        assertThatThrownBy(() -> src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst), "gpu0", 0)))
                .isInstanceOfSatisfying(MigrationService.Rejected.class, e -> {
                    assertThat(e.status()).isEqualTo(409);
                    assertThat(e.getMessage()).contains("busy with migration " + first.record().id());
                });
        // The refusal left the first migration alone: it completes, and frees the device.
        assertThat(first.completion().await().outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(dst.devices().find("gpu0"))).isEqualTo(Sim.digest(src.devices().find("gpu0")));
        assertThat(src.devices().find("gpu0").owner()).isNull();
    }
}
