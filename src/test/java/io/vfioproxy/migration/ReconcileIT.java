package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;

import io.vertx.core.Vertx;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.migration.MigrationStatus.Outcome;
import io.vfioproxy.migration.MigrationStatus.Role;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An agent that starts on what a dead predecessor left: a journal entry per interrupted migration and devices
 * (file-backed simulated ones, which keep their state and migration state across processes as an mdev does) in the
 * state that process left them in. Each case is set up exactly, then the agent starts and reconciles.
 */
class ReconcileIT {

    private static final long SIZE = 4 << 20;

    @TempDir
    Path dir;

    private Vertx vertx;
    private Journal journal;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        journal = new Journal(dir.resolve("journal"));
        journal.open();
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    /** A file-backed device left in {@code state} by a process that then ended; returns its digest. */
    private long leftIn(String name, long seed, DeviceState... path) throws Exception {
        SimulatedDevice d = SimulatedDevice.builder(name, SIZE).pageSize(LoopbackAgent.PAGE).seed(seed)
                .stateFile(dir.resolve(name + ".state")).build();
        for (DeviceState s : path) {
            d.setState(s);
        }
        long digest = d.stateDigest();
        d.close();
        return digest;
    }

    private AgentVerticle agent(String... devices) {
        LoopbackAgent a = LoopbackAgent.named("node").journal(dir.resolve("journal"));
        long seed = 1;
        for (String name : devices) {
            a.device(LoopbackAgent.simulated(name, SIZE, seed++).put("stateFile", dir.resolve(name + ".state")
                    .toString()));
        }
        return a.start(vertx);
    }

    private void journaled(String id, Role role, Phase phase, boolean committed, String device, String before)
            throws Exception {
        journal.write(new Journal.Entry(id, role, "node", "127.0.0.1:7070", phase, committed,
                List.of(new Journal.Device(device, before)), Instant.now()));
    }

    private static MigrationStatus reported(AgentVerticle agent, String id) {
        MigrationRecord r = agent.migrations().find(id);
        assertThat(r).as("migration %s is reported", id).isNotNull();
        return r.status();
    }

    private List<Path> journalFiles() throws Exception {
        try (var files = Files.list(dir.resolve("journal"))) {
            return files.toList();
        }
    }

    @Test
    void aSourceInterruptedBeforeItsCommitRunsAgain() throws Exception {
        long running = leftIn("gpu0", 1, DeviceState.RUNNING_P2P, DeviceState.STOP, DeviceState.STOP_COPY);
        long precopy = leftIn("gpu1", 2, DeviceState.PRE_COPY);
        journaled("m-stop-copy", Role.SOURCE, Phase.STOP_COPY, false, "gpu0", "RUNNING");
        journaled("m-precopy", Role.SOURCE, Phase.PRECOPY, false, "gpu1", "RUNNING");

        AgentVerticle agent = agent("gpu0", "gpu1");

        DeviceHandle gpu0 = agent.devices().find("gpu0");
        assertThat(gpu0.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(gpu0)).isEqualTo(running);
        assertThat(agent.devices().find("gpu1").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(agent.devices().find("gpu1"))).isEqualTo(precopy);
        MigrationStatus s = reported(agent, "m-stop-copy");
        assertThat(s.outcome()).isEqualTo(Outcome.FAILED);
        assertThat(s.error()).contains("agent node stopped during this migration, in phase STOP_COPY")
                .contains("the source devices are back in the state they had before it");
        assertThat(s.toJson().getString("deviceState")).isEqualTo("RUNNING");
        assertThat(reported(agent, "m-precopy").error()).contains("in phase PRECOPY");
        assertThat(journalFiles()).isEmpty();
    }

    @Test
    void aSourceThatWasStoppedBeforeItsMigrationGoesBackToStop() throws Exception {
        leftIn("gpu0", 1, DeviceState.STOP, DeviceState.STOP_COPY);
        journaled("m-1", Role.SOURCE, Phase.STOP_COPY, false, "gpu0", "STOP");
        AgentVerticle agent = agent("gpu0");
        assertThat(agent.devices().find("gpu0").state().await()).isEqualTo(DeviceState.STOP);
    }

    @Test
    void aCommittedSourceStaysStoppedAndSaysSo() throws Exception {
        // Killed after the commit reached the journal, before the devices left STOP_COPY for STOP.
        leftIn("gpu0", 1, DeviceState.RUNNING_P2P, DeviceState.STOP, DeviceState.STOP_COPY);
        journaled("m-1", Role.SOURCE, Phase.LOADING, true, "gpu0", "RUNNING");
        AgentVerticle agent = agent("gpu0");
        assertThat(agent.devices().find("gpu0").state().await()).isEqualTo(DeviceState.STOP);
        assertThat(reported(agent, "m-1").error()).contains("it had committed")
                .contains("the source devices stay stopped");
    }

    @Test
    void aDestinationLeftResumingIsReset() throws Exception {
        long before = leftIn("gpu0", 1, DeviceState.RUNNING_P2P, DeviceState.STOP, DeviceState.RESUMING);
        journaled("m-1", Role.DESTINATION, Phase.RESUMING, false, "gpu0", null);
        AgentVerticle agent = agent("gpu0");
        DeviceHandle gpu0 = agent.devices().find("gpu0");
        assertThat(gpu0.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(gpu0)).isEqualTo(before);
        assertThat(reported(agent, "m-1").error()).contains("in phase RESUMING")
                .contains("the destination devices were reset");
        assertThat(gpu0.heldFor()).isNull();
    }

    @Test
    void aDestinationThatHadLoadedKeepsTheStateHeld() throws Exception {
        leftIn("gpu0", 1, DeviceState.RUNNING_P2P, DeviceState.STOP);
        journaled("m-1", Role.DESTINATION, Phase.LOADED, true, "gpu0", null);
        AgentVerticle agent = agent("gpu0");
        DeviceHandle gpu0 = agent.devices().find("gpu0");
        assertThat(gpu0.state().await()).isEqualTo(DeviceState.STOP);
        assertThat(gpu0.heldFor()).isEqualTo("m-1");
        assertThat(reported(agent, "m-1").error()).contains("held for its consumer");
    }

    @Test
    void aDestinationFoundHalfStartedUnderALoadedEntryFinishesStarting() throws Exception {
        // chaos round 119 (seed 1): killed after START moved the device to RUNNING_P2P, before the journal said
        // STARTING. Only START takes a loaded device out of STOP, so the start is finished, not left half-way.
        long loaded = leftIn("gpu0", 1, DeviceState.RUNNING_P2P, DeviceState.STOP, DeviceState.RUNNING_P2P);
        journaled("m-1", Role.DESTINATION, Phase.LOADED, true, "gpu0", null);
        AgentVerticle agent = agent("gpu0");
        DeviceHandle gpu0 = agent.devices().find("gpu0");
        assertThat(gpu0.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(gpu0.heldFor()).isNull();
        assertThat(Sim.digest(gpu0)).isEqualTo(loaded);
        assertThat(reported(agent, "m-1").error()).contains("in phase LOADED");
    }

    @Test
    void anotherAgentsEntriesAreLeftToIt() throws Exception {
        leftIn("gpu0", 1, DeviceState.PRE_COPY);
        journal.write(new Journal.Entry("m-1", Role.SOURCE, "other-node", "127.0.0.1:7070", Phase.PRECOPY, false,
                List.of(new Journal.Device("gpu0", "RUNNING")), Instant.now()));
        AgentVerticle agent = agent("gpu0");
        assertThat(agent.migrations().find("m-1")).isNull();
        assertThat(agent.devices().find("gpu0").state().await()).isEqualTo(DeviceState.PRE_COPY);
        assertThat(journalFiles()).hasSize(1);
    }

    @Test
    void aDestinationToldToStartFinishesStarting() throws Exception {
        long loaded = leftIn("gpu0", 1, DeviceState.RUNNING_P2P, DeviceState.STOP, DeviceState.RUNNING_P2P);
        leftIn("gpu1", 2, DeviceState.RUNNING_P2P, DeviceState.STOP);
        journal.write(new Journal.Entry("m-1", Role.DESTINATION, "node", "127.0.0.1:7070", Phase.STARTING, true,
                List.of(new Journal.Device("gpu0", null), new Journal.Device("gpu1", null)), Instant.now()));
        AgentVerticle agent = agent("gpu0", "gpu1");
        assertThat(agent.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(agent.devices().find("gpu1").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(agent.devices().find("gpu0"))).isEqualTo(loaded);
        assertThat(reported(agent, "m-1").error()).contains("it had been told to start");
    }

    @Test
    void aJournalFileThatCannotBeReadIsReportedAndLeft() throws Exception {
        Path broken = Files.writeString(dir.resolve("journal").resolve("node.m-9.source.json"), "{\"id\": \"m-9\", ");
        AgentVerticle agent = agent("gpu0");
        MigrationStatus s = reported(agent, "journal:node.m-9.source.json");
        assertThat(s.error()).contains("journal file " + broken + " cannot be read")
                .contains("it is left in place");
        assertThat(broken).exists();
    }

    @Test
    void aMigrationThatEndsLeavesNoEntryAndOneUnderWayHasOne() throws Exception {
        AgentVerticle dst = LoopbackAgent.named("dst").journal(dir.resolve("dst-journal"))
                .device(LoopbackAgent.simulated("gpu0", SIZE, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src").journal(dir.resolve("src-journal"))
                .device(LoopbackAgent.simulated("gpu0", SIZE, 1)).start(vertx);
        MigrationService.Started held = src.migrations().migrate(new MigrationRequest("gpu0",
                LoopbackAgent.endpoint(dst), "gpu0", 0).withMode(MigrationRequest.Mode.PRECOPY)
                .withSwitchover(true, 300, 60_000));
        org.awaitility.Awaitility.await("ready for switchover").atMost(java.time.Duration.ofSeconds(30))
                .until(() -> held.record().status().phase() == Phase.READY_FOR_SWITCHOVER);
        Journal.Contents source = new Journal(dir.resolve("src-journal")).read();
        assertThat(source.entries()).singleElement().satisfies(e -> {
            assertThat(e.id()).isEqualTo(held.record().id());
            assertThat(e.role()).isEqualTo(Role.SOURCE);
            assertThat(e.committed()).isFalse();
            assertThat(e.devices()).containsExactly(new Journal.Device("gpu0", "RUNNING"));
        });
        assertThat(new Journal(dir.resolve("dst-journal")).read().entries()).singleElement()
                .satisfies(e -> assertThat(e.role()).isEqualTo(Role.DESTINATION));
        src.migrations().release(held.record().id()).await();
        assertThat(held.completion().await().outcome()).isEqualTo(Outcome.COMPLETED);
        org.awaitility.Awaitility.await("both entries are removed").atMost(java.time.Duration.ofSeconds(10))
                .until(() -> new Journal(dir.resolve("src-journal")).read().entries().isEmpty()
                        && new Journal(dir.resolve("dst-journal")).read().entries().isEmpty());
    }
}
