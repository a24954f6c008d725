package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.api.Events;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.StreamEndpoint;
import io.vfioproxy.testing.EventLog;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.Relay;
import io.vfioproxy.testing.Requests;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.time.Duration;
import java.util.List;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Pre-copy, multi-device P2P ordering, compatibility, cancel and manual switchover, between real agents. */
@ExtendWith(NoBufferLeaks.class)
class PrecopyIT {

    private static final long MIB = 1 << 20;
    /** A SECTION frame with a bare END_OF_STATE tag: header and tag. */
    private static final long IDLE_ITERATION_FRAME = Frames.HEADER_SIZE + 8;

    private Vertx vertx;
    private List<JsonObject> deviceEvents;
    private List<JsonObject> migrationEvents;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        deviceEvents = EventLog.record(vertx, Events.DEVICE_STATE);
        migrationEvents = EventLog.record(vertx, Events.MIGRATION);
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    private List<String> arcs(String agent, String device) {
        return deviceEvents.stream()
                .filter(e -> e.getString("agent").equals(agent) && (device == null || e.getString("device").equals(device)))
                .map(e -> e.getString("from") + ">" + e.getString("to")).toList();
    }

    private static int first(List<String> arcs, Predicate<String> p) {
        for (int i = 0; i < arcs.size(); i++) {
            if (p.test(arcs.get(i))) {
                return i;
            }
        }
        return -1;
    }

    private static int last(List<String> arcs, Predicate<String> p) {
        for (int i = arcs.size() - 1; i >= 0; i--) {
            if (p.test(arcs.get(i))) {
                return i;
            }
        }
        return -1;
    }

    private MigrationRecord awaitPhase(MigrationRecord record, Phase phase) {
        await("phase " + phase).atMost(Duration.ofSeconds(30)).until(() -> record.status().phase() == phase);
        return record;
    }

    private MigrationRecord destinationOutcome(AgentVerticle dst, String id) {
        await("the destination records its outcome").atMost(Duration.ofSeconds(15)).until(() -> {
            MigrationRecord r = dst.migrations().find(id);
            return r != null && r.status().outcome() != MigrationStatus.Outcome.ACTIVE && r.toJson().containsKey("deviceState");
        });
        return dst.migrations().find(id);
    }

    @Test
    void preCopyMovesMostOfTheStateWhileTheDeviceRuns() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 256 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 256 * MIB, 1).put("dirtyRate", "16MiB")).start(vertx);
        MigrationStatus r = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "gpu0"))
                .completion().await();

        assertThat(r.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(r.mode()).isEqualTo(MigrationRequest.Mode.PRECOPY);
        assertThat(r.switchoverReason()).startsWith("converged after");
        assertThat(r.transfer().precopyBytes()).isGreaterThanOrEqualTo(256 * MIB);
        // Only what the workload dirtied since it was sent moves while the device is stopped.
        assertThat(r.transfer().stopCopyBytes()).isLessThan(r.transfer().precopyBytes() / 10);
        assertThat(r.transfer().iterations()).isPositive();
        assertThat(r.transfer().bandwidth()).isPositive();
        // The destination splits what it received as the source sent it, from the section's grammar alone.
        MigrationStatus.Transfer received = destinationOutcome(dst, r.id()).status().transfer();
        assertThat(received.precopyBytes()).isEqualTo(r.transfer().precopyBytes());
        assertThat(received.stopCopyBytes()).isEqualTo(r.transfer().stopCopyBytes());
        assertThat(received.iterations()).isEqualTo(r.transfer().iterations());
        assertThat(Sim.digest(dst.devices().find("gpu0"))).isEqualTo(Sim.digest(src.devices().find("gpu0")));
        assertThat(arcs("src", "gpu0")).containsExactly("RUNNING>PRE_COPY", "PRE_COPY>PRE_COPY_P2P",
                "PRE_COPY_P2P>STOP_COPY", "STOP_COPY>STOP");
        assertThat(migrationEvents).anyMatch(e -> e.getString("event").equals("phase")
                && e.getString("phase").equals("PRECOPY"));
    }

    @Test
    void withADirtyRateAboveTheBandwidthTheBudgetEndsPreCopyAndSaysWhy() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 256 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 256 * MIB, 1).put("dirtyRate", "8GiB")).start(vertx);
        MigrationRequest req = Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "gpu0").withSwitchover(false, 1, 500);
        MigrationStatus r = src.migrations().migrate(req).completion().await();
        assertThat(r.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(r.switchoverReason()).startsWith("pre-copy budget of 500 ms ran out")
                .contains("over the 1 ms downtime limit").contains("dirty their state faster than the link moves it");
        assertThat(Sim.digest(dst.devices().find("gpu0"))).isEqualTo(Sim.digest(src.devices().find("gpu0")));
    }

    @Test
    void devicesAreAllQuiescedBeforeAnyStopsAndAllStartedP2pBeforeAnyRuns() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 64 * MIB, 10))
                .device(LoopbackAgent.simulated("nic0", 32 * MIB, 11))
                .device(LoopbackAgent.simulated("acc0", 16 * MIB, 12).put("flags", "STOP_COPY,P2P")).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 64 * MIB, 1).put("dirtyRate", "8MiB"))
                .device(LoopbackAgent.simulated("nic0", 32 * MIB, 2))
                .device(LoopbackAgent.simulated("acc0", 16 * MIB, 3).put("flags", "STOP_COPY,P2P")).start(vertx);
        MigrationStatus r = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "gpu0", "nic0",
                "acc0")).completion().await();
        assertThat(r.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        for (String d : List.of("gpu0", "nic0", "acc0")) {
            assertThat(Sim.digest(dst.devices().find(d))).as(d).isEqualTo(Sim.digest(src.devices().find(d)));
        }
        // Each device on a connection of its own, split as the source sent it (acc0: stop-copy only).
        MigrationStatus.Transfer received = destinationOutcome(dst, r.id()).status().transfer();
        assertThat(received.perDevice()).isEqualTo(r.transfer().perDevice());
        assertThat(received.perDevice().get("acc0").precopy()).isZero();
        assertThat(received.iterations()).isEqualTo(r.transfer().iterations());
        List<String> source = arcs("src", null);
        int lastQuiesced = last(source, a -> a.endsWith(">RUNNING_P2P") || a.endsWith(">PRE_COPY_P2P"));
        int firstStopped = first(source, a -> a.endsWith(">STOP") || a.endsWith(">STOP_COPY"));
        assertThat(lastQuiesced).as("source arcs " + source).isLessThan(firstStopped);
        assertThat(source.stream().filter(a -> a.endsWith("_P2P")).count()).isEqualTo(3);
        // acc0 cannot pre-copy: it waits in RUNNING, then stop-copies with the others.
        assertThat(arcs("src", "acc0")).containsExactly("RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP", "STOP>STOP_COPY",
                "STOP_COPY>STOP");
        // On the destination, RUNNING_P2P -> RUNNING happens only at the start: every device is in RUNNING_P2P first.
        await("every start arc").atMost(Duration.ofSeconds(5)).until(() -> arcs("dst", null).stream().filter(a -> a.equals("RUNNING_P2P>RUNNING")).count() == 3);
        List<String> destination = arcs("dst", null);
        assertThat(destination.stream().filter(a -> a.equals("STOP>RUNNING_P2P")).count()).isEqualTo(3);
        assertThat(last(destination, a -> a.equals("STOP>RUNNING_P2P"))).as("destination arcs " + destination)
                .isLessThan(first(destination, a -> a.equals("RUNNING_P2P>RUNNING")));
    }

    @Test
    void aFailureInTheSecondDeviceAfterTheFirstStoppedRollsEveryDeviceBack() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 10))
                .device(LoopbackAgent.simulated("gpu1", 32 * MIB, 11)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 1))
                .device(LoopbackAgent.simulated("gpu1", 32 * MIB, 2).put("faults", new JsonObject().put("failReadAt", 8 * MIB))).start(vertx);
        long before0 = Sim.digest(src.devices().find("gpu0"));
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.STOP_COPY, "gpu0", "gpu1"));
        assertThatThrownBy(() -> started.completion().await()).hasMessageContaining("gpu1: read(data_fd) failed");
        assertThat(arcs("src", "gpu0")).contains("STOP>STOP_COPY");
        assertThat(src.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(src.devices().find("gpu1").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(src.devices().find("gpu0"))).isEqualTo(before0);
        assertThat(started.record().toJson().getString("deviceState")).isEqualTo("RUNNING,RUNNING");
        MigrationRecord remote = destinationOutcome(dst, started.record().id());
        assertThat(remote.toJson().getString("deviceState")).isEqualTo("RUNNING,RUNNING");
    }

    @Test
    void anIncompatibleDestinationIsRefusedWhileTheSourceNeverLeavesRunning() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 2).put("compatibilityTag", "fw-2.1")).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 1).put("compatibilityTag", "fw-1.9")).start(vertx);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "gpu0"));
        assertThatThrownBy(() -> started.completion().await())
                .hasMessageContaining("compatibility tags differ: source 'fw-1.9', destination 'fw-2.1'");
        assertThat(arcs("src", "gpu0")).isEmpty();
        assertThat(arcs("dst", "gpu0")).isEmpty();
        assertThat(started.record().toJson().getString("failedPhase")).isEqualTo("HANDSHAKE");
    }

    private void assertCancelled(MigrationService.Started started, AgentVerticle src, Phase phase) {
        assertThat(src.migrations().cancel(started.record().id()).await().id()).isEqualTo(started.record().id());
        assertThatThrownBy(() -> started.completion().await()).hasMessageContaining("cancelled by the operator in phase "
                + phase);
        MigrationStatus r = started.record().status();
        assertThat(r.outcome()).isEqualTo(MigrationStatus.Outcome.CANCELLED);
        assertThat(r.ending().failedPhase()).isEqualTo(phase);
        assertThat(r.ending().deviceState()).isEqualTo("RUNNING");
        assertThat(src.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(src.devices().find("gpu0").owner()).isNull();
        assertThat(migrationEvents).anyMatch(e -> e.getString("event").equals("cancelled"));
    }

    @Test
    void cancelDuringTheHandshake() {
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 1)).start(vertx);
        int silent = vertx.createNetServer().connectHandler(s -> { }).listen(0, "127.0.0.1").await().actualPort();
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(new StreamEndpoint("127.0.0.1", silent), Mode.PRECOPY, "gpu0"));
        awaitPhase(started.record(), Phase.HANDSHAKE);
        assertCancelled(started, src, Phase.HANDSHAKE);
        assertThat(arcs("src", "gpu0")).isEmpty();
    }

    @Test
    void cancelDuringPreCopy() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 64 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 64 * MIB, 1).put("dirtyRate", "8GiB")).start(vertx);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "gpu0").withSwitchover(false, 0, 600_000));
        awaitPhase(started.record(), Phase.PRECOPY);
        assertCancelled(started, src, Phase.PRECOPY);
        assertThat(arcs("src", "gpu0")).containsExactly("RUNNING>PRE_COPY", "PRE_COPY>RUNNING");
        MigrationRecord remote = destinationOutcome(dst, started.record().id());
        assertThat(remote.status().error()).contains("the source aborted the migration: cancelled by the operator");
        assertThat(dst.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
    }

    @Test
    void aManualSwitchoverHoldsUntilReleased() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 64 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 64 * MIB, 1).put("dirtyRate", "4MiB")).start(vertx);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "gpu0").withSwitchover(true, 300, 30_000));
        awaitPhase(started.record(), Phase.READY_FOR_SWITCHOVER);
        await("the ready event").atMost(Duration.ofSeconds(5)).until(() -> migrationEvents.stream()
                .anyMatch(e -> e.getString("event").equals("ready-for-switchover")));
        // Held: the device still runs and keeps sending what it dirties.
        assertThat(src.devices().find("gpu0").state().await()).isEqualTo(DeviceState.PRE_COPY);
        assertThat(started.completion().isComplete()).isFalse();
        src.migrations().release(started.record().id()).await();
        MigrationStatus r = started.completion().await();
        assertThat(r.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(dst.devices().find("gpu0"))).isEqualTo(Sim.digest(src.devices().find("gpu0")));
    }

    @Test
    void aSwitchoverHeldLongerThanTheProgressTimeoutDoesNotTimeOut() {
        JsonObject quick = new JsonObject().put("progressTimeoutMillis", 1500);
        AgentVerticle dst = LoopbackAgent.named("dst").merge("migration", quick)
                .device(LoopbackAgent.simulated("gpu0", 16 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src").merge("migration", quick.copy())
                .device(LoopbackAgent.simulated("gpu0", 16 * MIB, 1)).start(vertx);
        Relay relay = Relay.start(vertx, LoopbackAgent.endpoint(dst), Long.MAX_VALUE);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(relay.endpoint(), Mode.PRECOPY, "gpu0")
                .withSwitchover(true, 300, 30_000));
        MigrationRecord record = awaitPhase(started.record(), Phase.READY_FOR_SWITCHOVER);
        // Held while three idle iterations (one a second, a bare END_OF_STATE frame each) cross to the destination:
        // twice the progress timeout with no device data, and neither side gives up.
        long heldAt = relay.sourceToDestinationBytes();
        await("three idle iterations while held").atMost(Duration.ofSeconds(20))
                .until(() -> relay.sourceToDestinationBytes() >= heldAt + 3 * IDLE_ITERATION_FRAME);
        assertThat(record.status().outcome()).isEqualTo(MigrationStatus.Outcome.ACTIVE);
        assertThat(dst.migrations().find(record.id()).status().outcome()).isEqualTo(MigrationStatus.Outcome.ACTIVE);
        src.migrations().release(record.id()).await();
        assertThat(started.completion().await().outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(dst.devices().find("gpu0"))).isEqualTo(Sim.digest(src.devices().find("gpu0")));
    }

    @Test
    void cancelWhileWaitingForTheSwitchover() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 1)).start(vertx);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "gpu0").withSwitchover(true, 300, 30_000));
        awaitPhase(started.record(), Phase.READY_FOR_SWITCHOVER);
        assertCancelled(started, src, Phase.READY_FOR_SWITCHOVER);
        assertThat(destinationOutcome(dst, started.record().id()).toJson().getString("deviceState"))
                .isEqualTo("RUNNING");
    }

    @Test
    void cancelDuringStopCopy() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 256 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 256 * MIB, 1)).start(vertx);
        // The relay passes the handshake and 8 MiB of data, then holds the rest: the source is caught in STOP_COPY.
        Relay relay = Relay.start(vertx, LoopbackAgent.endpoint(dst), 8 * MIB);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(relay.endpoint(), Mode.STOP_COPY, "gpu0"));
        awaitPhase(started.record(), Phase.STOP_COPY);
        assertCancelled(started, src, Phase.STOP_COPY);
        assertThat(arcs("src", "gpu0")).containsExactly("RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP", "STOP>STOP_COPY",
                "STOP_COPY>STOP", "STOP>RUNNING_P2P", "RUNNING_P2P>RUNNING");
        assertThat(destinationOutcome(dst, started.record().id()).toJson().getString("deviceState"))
                .isEqualTo("RUNNING");
    }

    @Test
    void cancelWhileTheDestinationResumesAndLoads() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 32 * MIB, 1)).start(vertx);
        // The ACCEPT reaches the source, the LOADED does not: the source waits in LOADING, the destination in LOADED.
        Relay relay = Relay.start(vertx, LoopbackAgent.endpoint(dst), Long.MAX_VALUE);
        relay.passDestinationFrames(1);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(relay.endpoint(), Mode.STOP_COPY, "gpu0"));
        awaitPhase(started.record(), Phase.LOADING);
        await("the destination loads").atMost(Duration.ofSeconds(10)).until(() -> {
            MigrationRecord r = dst.migrations().find(started.record().id());
            return r != null && r.status().phase() == Phase.LOADED;
        });
        assertCancelled(started, src, Phase.LOADING);
        // The source said it did not commit: the destination resets rather than keeping the state.
        MigrationRecord remote = destinationOutcome(dst, started.record().id());
        assertThat(remote.toJson().getString("deviceState")).isEqualTo("RUNNING");
        assertThat(remote.status().error()).doesNotContain("keeps the migrated state");
    }

    @Test
    void aCommittedMigrationCannotBeCancelled() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 16 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 16 * MIB, 1)).start(vertx);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.STOP_COPY, "gpu0"));
        started.completion().await();
        assertThatThrownBy(() -> src.migrations().cancel(started.record().id()).await())
                .isInstanceOfSatisfying(MigrationService.Rejected.class, e -> {
                    assertThat(e.status()).isEqualTo(409);
                    assertThat(e.getMessage()).contains("has already ended (completed)");
                });
    }
}
