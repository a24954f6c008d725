package io.vfioproxy.migration;

import io.vertx.core.json.JsonObject;
import java.time.Instant;

/**
 * What the agent knows of one migration, on either side. Written by the engine on its context; read as a JSON
 * snapshot from anywhere.
 */
public final class MigrationRecord {

    /** Which side of the migration this agent is. */
    public enum Role { SOURCE, DESTINATION }

    /** Where a migration ended, or that it has not. */
    public enum Outcome { ACTIVE, COMPLETED, FAILED, CANCELLED }

    private final String id;
    private final Role role;
    private final String agent;
    private final Instant startedAt = Instant.now();
    private final long startNanos = System.nanoTime();
    private volatile String device;
    private volatile String peerDevice;
    private volatile String peer;
    private volatile String phase = "SETUP";
    private volatile Outcome outcome = Outcome.ACTIVE;
    private volatile long stateSize;
    private volatile long dataBytes;
    private volatile long downtimeNanos = -1;
    private volatile long stopCopyNanos = -1;
    private volatile long durationNanos = -1;
    private volatile Instant endedAt;
    private volatile String error;
    private volatile String failedPhase;
    private volatile String deviceStateAfter;
    private volatile Boolean destinationStarted;
    private volatile String mode = "stop-copy";
    private volatile long precopyBytes;
    private volatile long stopCopyBytes;
    private volatile long iterations;
    private volatile long bandwidth;
    private volatile long transferNanos = -1;
    private volatile long remainingBytes = -1;
    private final java.util.Map<String, long[]> deviceBytes = new java.util.concurrent.ConcurrentHashMap<>();
    private volatile String switchoverReason;

    public MigrationRecord(String id, Role role, String agent) {
        this.id = id;
        this.role = role;
        this.agent = agent;
    }

    public String id() {
        return id;
    }

    public Role role() {
        return role;
    }

    public String device() {
        return device;
    }

    public String phase() {
        return phase;
    }

    public Outcome outcome() {
        return outcome;
    }

    public long dataBytes() {
        return dataBytes;
    }

    public long stateSize() {
        return stateSize;
    }

    /** Milliseconds the device was stopped, or -1 when not known. */
    public double downtimeMillis() {
        return downtimeNanos < 0 ? -1 : downtimeNanos / 1e6;
    }

    public String error() {
        return error;
    }

    public Boolean destinationStarted() {
        return destinationStarted;
    }

    public long precopyBytes() {
        return precopyBytes;
    }

    public long stopCopyBytes() {
        return stopCopyBytes;
    }

    public long iterations() {
        return iterations;
    }

    /** Bytes per second the migration moved, as measured; 0 before a measurement. */
    public long bandwidth() {
        return bandwidth;
    }

    public String switchoverReason() {
        return switchoverReason;
    }

    public String mode() {
        return mode;
    }

    void mode(String m) {
        this.mode = m;
    }

    void transfer(long precopy, long stopCopy, long iterationCount) {
        this.precopyBytes = precopy;
        this.stopCopyBytes = stopCopy;
        this.iterations = iterationCount;
    }

    /** Milliseconds from start to end, or -1 while active. */
    public double durationMillis() {
        return durationNanos < 0 ? -1 : durationNanos / 1e6;
    }

    /** The bytes still expected to move (the source's estimate), or -1 where not known. */
    public long remainingBytes() {
        return remainingBytes;
    }

    void remainingBytes(long bytes) {
        this.remainingBytes = bytes;
    }

    /** Per device: {pre-copy bytes, stop-copy bytes} sent, or {0, bytes} received. A copy. */
    public java.util.Map<String, long[]> deviceBytes() {
        java.util.Map<String, long[]> copy = new java.util.TreeMap<>();
        deviceBytes.forEach((k, v) -> copy.put(k, v.clone()));
        return copy;
    }

    void deviceBytes(String device, long precopy, long stopCopy) {
        deviceBytes.put(device, new long[] {precopy, stopCopy});
    }

    /** Seconds from the first byte of device data to the end of the last section, or -1. */
    public double transferSeconds() {
        return transferNanos < 0 ? -1 : transferNanos / 1e9;
    }

    void transferNanos(long nanos) {
        this.transferNanos = nanos;
    }

    void bandwidth(long bytesPerSecond) {
        this.bandwidth = bytesPerSecond;
    }

    void switchoverReason(String reason) {
        this.switchoverReason = reason;
    }

    void devices(String device, String peerDevice, String peer) {
        this.device = device;
        this.peerDevice = peerDevice;
        this.peer = peer;
    }

    void phase(String phase) {
        this.phase = phase;
    }

    void stateSize(long bytes) {
        this.stateSize = bytes;
    }

    void dataBytes(long bytes) {
        this.dataBytes = bytes;
    }

    void downtimeNanos(long nanos) {
        this.downtimeNanos = nanos;
    }

    void stopCopyNanos(long nanos) {
        this.stopCopyNanos = nanos;
    }

    void destinationStarted(boolean started) {
        this.destinationStarted = started;
    }

    void completed(String deviceState) {
        end(Outcome.COMPLETED, deviceState);
        this.phase = "COMPLETED";
    }

    void failed(String phaseOfFailure, String reason, String deviceState) {
        this.failedPhase = phaseOfFailure;
        this.error = reason;
        end(Outcome.FAILED, deviceState);
        this.phase = "FAILED";
    }

    void cancelled(String phaseOfCancel, String reason, String deviceState) {
        this.failedPhase = phaseOfCancel;
        this.error = reason;
        end(Outcome.CANCELLED, deviceState);
        this.phase = "CANCELLED";
    }

    private void end(Outcome o, String deviceState) {
        this.deviceStateAfter = deviceState;
        this.endedAt = Instant.now();
        this.durationNanos = System.nanoTime() - startNanos;
        this.outcome = o;
    }

    public JsonObject toJson() {
        JsonObject json = new JsonObject()
                .put("id", id)
                .put("role", role.name().toLowerCase())
                .put("agent", agent)
                .put("device", device)
                .put("peerDevice", peerDevice)
                .put("peer", peer)
                .put("phase", phase)
                .put("outcome", outcome.name().toLowerCase())
                .put("startedAt", startedAt.toString())
                .put("mode", mode)
                .put("stateSize", stateSize)
                .put("dataBytes", dataBytes)
                .put("precopyBytes", precopyBytes)
                .put("stopCopyBytes", stopCopyBytes)
                .put("precopyIterations", iterations);
        if (bandwidth > 0) {
            json.put("bandwidthBytesPerSecond", bandwidth);
        }
        if (switchoverReason != null) {
            json.put("switchoverReason", switchoverReason);
        }
        if (remainingBytes >= 0 && outcome == Outcome.ACTIVE) {
            json.put("remainingBytes", remainingBytes);
        }
        if (downtimeNanos >= 0) {
            json.put("downtimeMillis", downtimeNanos / 1e6);
        }
        if (stopCopyNanos > 0) {
            json.put("stopCopySeconds", stopCopyNanos / 1e9);
        }
        if (transferNanos > 0) {
            json.put("transferSeconds", transferNanos / 1e9)
                    .put("throughputBytesPerSecond", (long) (dataBytes / (transferNanos / 1e9)));
        }
        if (endedAt != null) {
            json.put("endedAt", endedAt.toString()).put("durationMillis", durationNanos / 1e6);
        }
        if (error != null) {
            json.put("error", error).put("failedPhase", failedPhase);
        }
        if (deviceStateAfter != null) {
            json.put("deviceState", deviceStateAfter);
        }
        if (destinationStarted != null) {
            json.put("destinationStarted", destinationStarted);
        }
        return json;
    }
}
