package io.vfioproxy.migration;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.migration.MigrationRequest.Mode;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What the agent knows of one migration at one moment, on either side: immutable, so a reader never sees half an
 * update (an outcome of the end with the phase of before). The engine that runs the migration makes each new one
 * from the last and publishes it through its {@link MigrationRecord}.
 *
 * @param id the migration's id, the same on both agents
 * @param role which side this agent is
 * @param agent this agent's name
 * @param startedAt when this agent began the migration
 * @param startNanos the same moment on the monotonic clock, for durations
 * @param mode pre-copy or stop-copy, as the source decided it
 * @param peers the devices and the peer agent
 * @param phase where the migration is
 * @param transfer what has moved
 * @param switchoverReason why pre-copy ended, or null
 * @param timing how long the devices were stopped and the data moved
 * @param ending how it ended, or null while it runs
 */
public record MigrationStatus(String id, Role role, String agent, Instant startedAt, long startNanos, Mode mode,
        Peers peers, Phase phase, Transfer transfer, String switchoverReason, Timing timing, Ending ending) {

    /** Which side of the migration this agent is. */
    public enum Role { SOURCE, DESTINATION }

    /** Where a migration ended, or that it has not. */
    public enum Outcome { ACTIVE, COMPLETED, FAILED, CANCELLED }

    /**
     * @param devices this agent's devices, in the migration's order
     * @param peerDevices the peer's devices that pair with them
     * @param peer the peer agent's address
     * @param peerAgent the peer agent's name, once its HELLO or ACCEPT said it; null before
     */
    /**
     * @param connections the agent-to-agent connections the migration's streams use (one, or one per device with the
     *        {@code device-connections} feature); 0 before the handshake settled it
     */
    public record Peers(List<String> devices, List<String> peerDevices, String peer, String peerAgent,
            int connections) {
        public Peers {
            devices = List.copyOf(devices);
            peerDevices = List.copyOf(peerDevices);
        }

        Peers(List<String> devices, List<String> peerDevices, String peer) {
            this(devices, peerDevices, peer, null, 0);
        }

        Peers withPeerAgent(String name) {
            return new Peers(devices, peerDevices, peer, name, connections);
        }

        Peers withConnections(int count) {
            return new Peers(devices, peerDevices, peer, peerAgent, count);
        }

        static final Peers UNKNOWN = new Peers(List.of(), List.of(), null);
    }

    /**
     * Device data bytes, per device: {@code precopy} and {@code stopCopy} sent, or all {@code stopCopy} received.
     */
    public record DeviceBytes(long precopy, long stopCopy) {
        public long total() {
            return precopy + stopCopy;
        }
    }

    /**
     * @param stateSize the devices' stop-copy size estimates, summed
     * @param dataBytes device data bytes moved, both phases
     * @param precopyBytes sent while the devices ran
     * @param stopCopyBytes sent while they were stopped
     * @param iterations pre-copy iterations ended
     * @param remainingBytes what is still expected to move, or -1 where not known
     * @param bandwidth bytes per second as measured, or 0 before a measurement
     * @param perDevice the data bytes of each device
     */
    public record Transfer(long stateSize, long dataBytes, long precopyBytes, long stopCopyBytes, long iterations,
            long remainingBytes, long bandwidth, Map<String, DeviceBytes> perDevice) {
        public Transfer {
            perDevice = Map.copyOf(perDevice);
        }

        static final Transfer NONE = new Transfer(0, 0, 0, 0, 0, -1, 0, Map.of());

        Transfer withStateSize(long bytes) {
            return new Transfer(bytes, dataBytes, precopyBytes, stopCopyBytes, iterations, remainingBytes, bandwidth,
                    perDevice);
        }
    }

    /** Durations in nanoseconds, -1 where not known yet. */
    public record Timing(long downtimeNanos, long stopCopyNanos, long transferNanos) {
        static final Timing NONE = new Timing(-1, -1, -1);
    }

    /**
     * @param outcome completed, failed or cancelled
     * @param endedAt when
     * @param durationNanos from the start
     * @param failedPhase the phase a failure or cancel happened in, or null
     * @param error why it failed, or null
     * @param deviceState the devices' states after the end ("RUNNING", "RUNNING,STOP")
     * @param destinationStarted source only: whether the destination confirmed its devices run, or null
     * @param warning what went wrong after the commit, or null
     */
    public record Ending(Outcome outcome, Instant endedAt, long durationNanos, Phase failedPhase, String error,
            String deviceState, Boolean destinationStarted, String warning) {
    }

    /** A migration that begins now, in {@code phase}. */
    static MigrationStatus begin(String id, Role role, String agent, Mode mode, Phase phase) {
        return new MigrationStatus(id, role, agent, Instant.now(), System.nanoTime(), mode, Peers.UNKNOWN, phase,
                Transfer.NONE, null, Timing.NONE, null);
    }

    public Outcome outcome() {
        return ending == null ? Outcome.ACTIVE : ending.outcome();
    }

    /** Why it failed or was cancelled, or null. */
    public String error() {
        return ending == null ? null : ending.error();
    }

    /** Milliseconds the devices were stopped, or -1 when not known. */
    public double downtimeMillis() {
        return timing.downtimeNanos() < 0 ? -1 : timing.downtimeNanos() / 1e6;
    }

    /** Milliseconds from start to end, or -1 while active. */
    public double durationMillis() {
        return ending == null ? -1 : ending.durationNanos() / 1e6;
    }

    /** Seconds from the first byte of device data to the end of the last section, or -1. */
    public double transferSeconds() {
        return timing.transferNanos() < 0 ? -1 : timing.transferNanos() / 1e9;
    }

    MigrationStatus withMode(Mode m) {
        return new MigrationStatus(id, role, agent, startedAt, startNanos, m, peers, phase, transfer,
                switchoverReason, timing, ending);
    }

    MigrationStatus withPeers(Peers p) {
        return new MigrationStatus(id, role, agent, startedAt, startNanos, mode, p, phase, transfer, switchoverReason,
                timing, ending);
    }

    MigrationStatus withPhase(Phase p) {
        return new MigrationStatus(id, role, agent, startedAt, startNanos, mode, peers, p, transfer, switchoverReason,
                timing, ending);
    }

    MigrationStatus withTransfer(Transfer t) {
        return new MigrationStatus(id, role, agent, startedAt, startNanos, mode, peers, phase, t, switchoverReason,
                timing, ending);
    }

    MigrationStatus withSwitchoverReason(String reason) {
        return new MigrationStatus(id, role, agent, startedAt, startNanos, mode, peers, phase, transfer, reason,
                timing, ending);
    }

    MigrationStatus withTiming(Timing t) {
        return new MigrationStatus(id, role, agent, startedAt, startNanos, mode, peers, phase, transfer,
                switchoverReason, t, ending);
    }

    /** The end, and the phase that says it, in one step. */
    MigrationStatus end(Outcome outcome, Phase failedPhase, String error, String deviceState,
            Boolean destinationStarted, String warning) {
        Phase last = switch (outcome) {
            case COMPLETED -> Phase.COMPLETED;
            case FAILED -> Phase.FAILED;
            case CANCELLED -> Phase.CANCELLED;
            case ACTIVE -> throw new IllegalArgumentException("a migration cannot end active");
        };
        Ending e = new Ending(outcome, Instant.now(), System.nanoTime() - startNanos, failedPhase, error,
                deviceState, destinationStarted, warning);
        return new MigrationStatus(id, role, agent, startedAt, startNanos, mode, peers, last, transfer,
                switchoverReason, timing, e);
    }

    /** The API's JSON form (docs/EVENTS.md). */
    public JsonObject toJson() {
        JsonObject json = new JsonObject()
                .put("id", id)
                .put("role", role.name().toLowerCase())
                .put("agent", agent)
                .put("device", peers.devices().isEmpty() ? null : String.join(",", peers.devices()))
                .put("peerDevice", peers.peerDevices().isEmpty() ? null : String.join(",", peers.peerDevices()))
                .put("peer", peers.peer())
                .put("phase", phase.name())
                .put("outcome", outcome().name().toLowerCase())
                .put("startedAt", startedAt.toString())
                .put("mode", mode.wireName())
                .put("stateSize", transfer.stateSize())
                .put("dataBytes", transfer.dataBytes())
                .put("precopyBytes", transfer.precopyBytes())
                .put("stopCopyBytes", transfer.stopCopyBytes())
                .put("precopyIterations", transfer.iterations());
        if (!transfer.perDevice().isEmpty()) {
            JsonObject perDevice = new JsonObject();
            new TreeMap<>(transfer.perDevice()).forEach((device, b) -> perDevice.put(device, new JsonObject()
                    .put("precopyBytes", b.precopy()).put("stopCopyBytes", b.stopCopy())));
            json.put("deviceBytes", perDevice);
        }
        if (transfer.bandwidth() > 0) {
            json.put("bandwidthBytesPerSecond", transfer.bandwidth());
        }
        if (peers.peerAgent() != null) {
            json.put("peerAgent", peers.peerAgent());
        }
        if (peers.connections() > 0) {
            json.put("connections", peers.connections());
        }
        if (switchoverReason != null) {
            json.put("switchoverReason", switchoverReason);
        }
        if (transfer.remainingBytes() >= 0 && ending == null) {
            json.put("remainingBytes", transfer.remainingBytes());
        }
        if (timing.downtimeNanos() >= 0) {
            json.put("downtimeMillis", timing.downtimeNanos() / 1e6);
        }
        if (timing.stopCopyNanos() > 0) {
            json.put("stopCopySeconds", timing.stopCopyNanos() / 1e9);
        }
        if (timing.transferNanos() > 0) {
            json.put("transferSeconds", timing.transferNanos() / 1e9)
                    .put("throughputBytesPerSecond", (long) (transfer.dataBytes() / (timing.transferNanos() / 1e9)));
        }
        if (ending != null) {
            json.put("endedAt", ending.endedAt().toString()).put("durationMillis", ending.durationNanos() / 1e6);
            if (ending.error() != null) {
                json.put("error", ending.error()).put("failedPhase", ending.failedPhase().name());
            }
            if (ending.deviceState() != null) {
                json.put("deviceState", ending.deviceState());
            }
            if (ending.destinationStarted() != null) {
                json.put("destinationStarted", ending.destinationStarted());
            }
            if (ending.warning() != null) {
                json.put("warning", ending.warning());
            }
        }
        return json;
    }
}
