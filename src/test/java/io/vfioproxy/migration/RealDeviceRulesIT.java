package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.api.Events;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.migration.MigrationRequest.DevicePair;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.testing.EventLog;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.Relay;
import io.vfioproxy.testing.Requests;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * What real drivers need that the forgiving simulator and mtty would let pass, shown on the simulator with the
 * matching behaviour: QEMU's rules where the agent used to depart from them.
 */
@ExtendWith(NoBufferLeaks.class)
class RealDeviceRulesIT {

    private static final long MIB = 1 << 20;

    private Vertx vertx;
    private List<JsonObject> deviceEvents;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        deviceEvents = EventLog.record(vertx, Events.DEVICE_STATE);
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

    private AgentVerticle agent(String name, JsonObject... devices) {
        LoopbackAgent agent = LoopbackAgent.named(name);
        for (JsonObject d : devices) {
            agent.device(d);
        }
        return agent.start(vertx);
    }

    @Test
    void theStopCopySizeIsAskedWhenTheMigrationStartsNotWhenTheDeviceWasOpened() {
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("gpu0", 64 * MIB, 2));
        AgentVerticle src = agent("src", LoopbackAgent.simulated("gpu0", 64 * MIB, 1));
        // The driver's estimate moved since the agent opened the device, as mlx5's does with the device's activity.
        SimulatedDevice device = Sim.device(src.devices().find("gpu0"));
        device.reportDataSize(256 * 1024);
        MigrationStatus done = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.STOP_COPY, "gpu0"))
                .completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(done.transfer().stateSize()).isEqualTo(256 * 1024);
        assertThat(dst.migrations().find(done.id()).status().transfer().stateSize()).isEqualTo(256 * 1024);
        // QEMU's buffer is min(1 MiB, MIG_DATA_SIZE): 256 KiB reads, so the 64 MiB stream came in 257 chunks.
        long chunks = (device.fullStreamSize() + 256 * 1024 - 1) / (256 * 1024);
        assertThat(done.transfer().dataBytes()).isEqualTo(device.fullStreamSize());
        assertThat(Sim.device(dst.devices().find("gpu0")).stateDigest()).isEqualTo(device.stateDigest());
        assertThat(chunks).isGreaterThan(256);
    }

    @Test
    void aStoppedSourceIsNeverRestartedByPreCopyNorByARollback() {
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("gpu0", 16 * MIB, 2),
                LoopbackAgent.simulated("nic0", 16 * MIB, 3));
        AgentVerticle src = agent("src", LoopbackAgent.simulated("gpu0", 16 * MIB, 1),
                LoopbackAgent.simulated("nic0", 16 * MIB, 4).put("faults",
                        new JsonObject().put("failReadAt", 4 * MIB)));
        DeviceHandle gpu = src.devices().find("gpu0");
        // The VMM paused the workload: the device is in STOP when the migration is asked to pre-copy.
        gpu.setState(DeviceState.STOP, DeviceState.RUNNING, "the VM paused").await();
        MigrationStatus done = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "gpu0"))
                .completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(done.mode()).as("a stopped device stop-copies").isEqualTo(Mode.STOP_COPY);
        assertThat(arcs("src", "gpu0")).containsExactly("RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP", "STOP>STOP_COPY",
                "STOP_COPY>STOP");

        // A failed migration of a stopped device returns it to STOP, where it was, not to RUNNING.
        DeviceHandle nic = src.devices().find("nic0");
        nic.setState(DeviceState.STOP, DeviceState.RUNNING, "the VM paused").await();
        MigrationService.Started failing = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY,
                "nic0"));
        assertThatThrownBy(() -> failing.completion().await()).hasMessageContaining("read(data_fd) failed");
        assertThat(nic.state().await()).isEqualTo(DeviceState.STOP);
        assertThat(failing.record().status().ending().deviceState()).isEqualTo("STOP");
        assertThat(arcs("src", "nic0")).doesNotContain("STOP>RUNNING_P2P", "RUNNING_P2P>RUNNING");
    }

    @Test
    void aSourceInAnotherStateIsRefusedAsQemuRefusesIt() {
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("gpu0", 16 * MIB, 2));
        AgentVerticle src = agent("src", LoopbackAgent.simulated("gpu0", 16 * MIB, 1));
        DeviceHandle gpu = src.devices().find("gpu0");
        gpu.setState(DeviceState.RUNNING_P2P, DeviceState.RUNNING, "a peer is being quiesced").await();
        MigrationService.Started refused = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY,
                "gpu0"));
        assertThatThrownBy(() -> refused.completion().await())
                .hasMessageContaining("device gpu0 is in state RUNNING_P2P: a source device must be RUNNING or STOP");
        assertThat(gpu.state().await()).isEqualTo(DeviceState.RUNNING_P2P);
        assertThat(dst.migrations().all()).isEmpty();
    }

    @Test
    void aDeviceThatCannotTellItsSizeOpensAndMigrates() {
        JsonObject noSize = LoopbackAgent.simulated("acc0", 8 * MIB, 1).put("faults",
                new JsonObject().put("failDataSize", "ENOTTY"));
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("acc0", 8 * MIB, 2));
        AgentVerticle src = agent("src", noSize);
        assertThat(src.devices().find("acc0").identity().stateSize()).isEqualTo(-1);
        MigrationStatus done = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.PRECOPY, "acc0")
                .withSwitchover(false, 300, 2000)).completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(dst.devices().find("acc0"))).isEqualTo(Sim.digest(src.devices().find("acc0")));
    }

    @Test
    void preCopyAsksTheDeviceAtIterationEndsNotAfterEveryChunk() {
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("gpu0", 64 * MIB, 2));
        AgentVerticle src = agent("src", LoopbackAgent.simulated("gpu0", 64 * MIB, 1));
        SimulatedDevice device = Sim.device(src.devices().find("gpu0"));
        Relay relay = Relay.start(vertx, LoopbackAgent.endpoint(dst), Long.MAX_VALUE);
        MigrationService.Started started = src.migrations().migrate(Requests.sameNames(relay.endpoint(), Mode.PRECOPY, "gpu0")
                .withSwitchover(true, 300, 30_000));
        await("ready for switchover").atMost(Duration.ofSeconds(30))
                .until(() -> started.record().status().phase() == Phase.READY_FOR_SWITCHOVER);
        long chunks = relay.sourceFrames().stream().filter(f -> f.equals("DEV_DATA_STATE")).count();
        assertThat(chunks).as("64 MiB of initial data in 1 MiB chunks").isGreaterThanOrEqualTo(64);
        // Once at the start, then where the data ran dry: not once a chunk.
        assertThat(device.calls().precopyInfo()).isLessThan(8);
        assertThat(device.calls().dataSize()).isLessThan(8);

        // Held, the device is idle and the source sends an empty iteration (a bare END_OF_STATE) a second. Between
        // them, reads back off and the device is asked at most ten times a second.
        int heldAt = relay.sourceFrames().size();
        long readsBefore = device.calls().reads();
        long askedBefore = device.calls().precopyInfo();
        await("three idle iterations").atMost(Duration.ofSeconds(20))
                .until(() -> idleIterations(relay, heldAt) >= 3);
        long idle = idleIterations(relay, heldAt);
        long reads = device.calls().reads() - readsBefore;
        long asked = device.calls().precopyInfo() - askedBefore;
        assertThat(reads).as(reads + " reads over " + idle + " idle iterations").isLessThanOrEqualTo(15 * (idle + 1));
        assertThat(asked).as(asked + " queries over " + idle + " idle iterations").isLessThanOrEqualTo(11 * (idle + 1));
        src.migrations().release(started.record().id()).await();
        assertThat(started.completion().await().outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
    }

    /** The bare END_OF_STATEs the source sent since frame {@code from}: its idle iterations, one a second. */
    private static long idleIterations(Relay relay, int from) {
        List<String> frames = relay.sourceFrames();
        return frames.subList(from, frames.size()).stream().filter(f -> f.equals("END_OF_STATE")).count();
    }

    @Test
    void severalDevicesOneWithoutP2pAreRefusedUnlessAllowedAndRollBackInP2pOrder() {
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("gpu0", 16 * MIB, 10),
                LoopbackAgent.simulated("acc0", 16 * MIB, 11).put("flags", "STOP_COPY"),
                LoopbackAgent.simulated("nic0", 16 * MIB, 12));
        AgentVerticle src = agent("src", LoopbackAgent.simulated("gpu0", 16 * MIB, 1),
                LoopbackAgent.simulated("acc0", 16 * MIB, 2).put("flags", "STOP_COPY"),
                LoopbackAgent.simulated("nic0", 16 * MIB, 3).put("faults", new JsonObject().put("failReadAt", 4 * MIB)));
        assertThatThrownBy(() -> src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.STOP_COPY, "gpu0",
                "acc0"))).isInstanceOfSatisfying(MigrationService.Rejected.class, e -> {
                    assertThat(e.status()).isEqualTo(400);
                    assertThat(e.getMessage()).contains("device acc0 has no VFIO_MIGRATION_P2P")
                            .contains("allowDevicesWithoutP2p");
                });
        MigrationRequest allowed = new MigrationRequest(List.of(new DevicePair("gpu0", "gpu0"),
                new DevicePair("acc0", "acc0")), LoopbackAgent.endpoint(dst), Mode.STOP_COPY, false, 300, 30_000, 0,
                true);
        assertThat(src.migrations().migrate(allowed).completion().await().outcome())
                .isEqualTo(MigrationStatus.Outcome.COMPLETED);

        // Two P2P devices, the second fails mid-stream: both were stopped; they come back through RUNNING_P2P first.
        src.devices().find("gpu0").reset("next run").await();
        deviceEvents.clear();
        MigrationService.Started failing = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst),
                Mode.STOP_COPY, "gpu0", "nic0"));
        assertThatThrownBy(() -> failing.completion().await()).hasMessageContaining("nic0: read(data_fd) failed");
        // The device events travel the event bus: the last may arrive after the migration's end.
        await("both source devices back in RUNNING").atMost(Duration.ofSeconds(30)).until(() -> arcs("src", null)
                .stream().filter(a -> a.equals("RUNNING_P2P>RUNNING")).count() == 2);
        List<String> rollback = arcs("src", null);
        int lastQuiesced = lastIndex(rollback, "STOP>RUNNING_P2P");
        int firstRunning = rollback.indexOf("RUNNING_P2P>RUNNING");
        assertThat(rollback.stream().filter(a -> a.equals("STOP>RUNNING_P2P")).count()).as(rollback.toString())
                .isEqualTo(2);
        assertThat(lastQuiesced).as("every device at RUNNING_P2P before any runs: " + rollback).isLessThan(firstRunning);
    }

    private static int lastIndex(List<String> list, String value) {
        return list.lastIndexOf(value);
    }

    @Test
    void theSectionIsQemusToTheByteAndTheSwitchoverClosesTheIteration() {
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("gpu0", 32 * MIB, 2));
        // Dirtied faster than the link moves it: pre-copy never runs dry, the budget ends it mid-iteration.
        AgentVerticle src = agent("src", LoopbackAgent.simulated("gpu0", 32 * MIB, 1).put("dirtyRate", "8GiB"));
        Relay relay = Relay.start(vertx, LoopbackAgent.endpoint(dst), Long.MAX_VALUE);
        MigrationStatus done = src.migrations().migrate(Requests.sameNames(relay.endpoint(), Mode.PRECOPY, "gpu0")
                .withSwitchover(false, 1, 500)).completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        List<String> frames = relay.sourceFrames().stream().filter(f -> !f.equals("DEV_DATA_STATE")).toList();
        // HELLO; setup; pre-copy data, its last iteration closed by the switchover; stop-copy data and its end;
        // config; the agent's SECTION_END; START.
        // The initial data's last iteration ends with DEV_INIT_DATA_SENT, the destination having taken switchover-ack.
        assertThat(frames).containsExactly("HELLO", "DEV_SETUP_STATE", "END_OF_STATE", "DEV_INIT_DATA_SENT",
                "END_OF_STATE", "END_OF_STATE", "DEV_CONFIG_STATE 0", "END_OF_STATE", "SECTION_END", "START");
    }

    @Test
    void aPciFunctionIsLeftInStopWithItsStateAndHeldForItsConsumerAnMdevRuns() {
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("gpu0", 16 * MIB, 10).put("kind", "pci"),
                LoopbackAgent.simulated("vgpu0", 16 * MIB, 11));
        AgentVerticle src = agent("src", LoopbackAgent.simulated("gpu0", 16 * MIB, 1),
                LoopbackAgent.simulated("vgpu0", 16 * MIB, 2));
        MigrationStatus done = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.STOP_COPY, "gpu0",
                "vgpu0")).completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(done.ending().destinationStarted()).isTrue();

        DeviceHandle gpu = dst.devices().find("gpu0");
        DeviceHandle vgpu = dst.devices().find("vgpu0");
        // Its DMA mappings, MSI-X and bus mastering are the VMM's to set up: the agent does not run it.
        assertThat(gpu.state().await()).isEqualTo(DeviceState.STOP);
        assertThat(arcs("dst", "gpu0")).containsExactly("RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP", "STOP>RESUMING",
                "RESUMING>STOP");
        assertThat(vgpu.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(arcs("dst", "vgpu0")).endsWith("STOP>RUNNING_P2P", "RUNNING_P2P>RUNNING");
        MigrationStatus atDestination = ended(dst, done.id());
        assertThat(atDestination.ending().deviceState()).isEqualTo("STOP,RUNNING");
        assertThat(gpu.heldFor()).isEqualTo(done.id());
        assertThat(vgpu.heldFor()).isNull();
        assertThat(Sim.digest(gpu)).as("the migrated state, kept while the agent holds the device open")
                .isEqualTo(Sim.digest(src.devices().find("gpu0")));
        assertThat(io.vfioproxy.api.AgentCommands.describe(gpu).await().getString("destination"))
                .isEqualTo("holds it in STOP, open, until it is released to its consumer");

        // Closed by the agent, vfio-pci resets the function and the state is gone: a warning says so.
        SimulatedDevice held = Sim.device(gpu);
        long migrated = held.stateDigest();
        vertx.undeploy(dst.deploymentID()).await();
        assertThat(held.stateDigest()).isNotEqualTo(migrated);
    }

    @Test
    void anMdevConfiguredToStopIsHeldAndAHandBackTheBackendCannotDoLeavesItHeldWithTheReason() {
        AgentVerticle dst = agent("dst", LoopbackAgent.simulated("gpu0", 8 * MIB, 10).put("afterMigration", "stop")
                .put("handback", "/run/vmm/gpu0.sock"));
        AgentVerticle src = agent("src", LoopbackAgent.simulated("gpu0", 8 * MIB, 1));
        MigrationStatus done = src.migrations().migrate(Requests.sameNames(LoopbackAgent.endpoint(dst), Mode.STOP_COPY, "gpu0"))
                .completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        MigrationStatus atDestination = ended(dst, done.id());
        DeviceHandle gpu = dst.devices().find("gpu0");
        assertThat(gpu.state().await()).isEqualTo(DeviceState.STOP);
        assertThat(gpu.heldFor()).isEqualTo(done.id());
        assertThat(gpu.handedOverTo()).isNull();
        assertThat(atDestination.ending().warning())
                .isEqualTo("device gpu0 could not be handed to /run/vmm/gpu0.sock (gpu0: hand over to "
                        + "/run/vmm/gpu0.sock failed in state STOP: EOPNOTSUPP (operation not supported): this backend has no fd "
                        + "to hand over); it holds the migrated state in STOP until released");
        // The next migration into it takes it over: a claim clears the hold.
        assertThat(gpu.claim("next")).isTrue();
        assertThat(gpu.heldFor()).isNull();
        gpu.release("next");
    }

    /** The destination's record of {@code id} once it ended: the source may finish first. */
    private static MigrationStatus ended(AgentVerticle agent, String id) {
        return await("destination record of " + id + " ended").atMost(Duration.ofSeconds(30))
                .until(() -> agent.migrations().find(id).status(), s -> s.ending() != null);
    }
}
