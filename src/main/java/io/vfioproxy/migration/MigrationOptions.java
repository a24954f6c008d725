package io.vfioproxy.migration;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.stream.Limits;

/**
 * Tunables of the migration engines ("migration" in conf/agent.json).
 *
 * @param chunkSize the most device data one read and one frame carry; QEMU's default is 1 MiB
 * @param progressTimeoutMillis a migration with no bytes moving either way for this long fails
 * @param deviceWriteQueueBytes destination: received bytes not yet written to the device before the connection
 *        is paused
 * @param startDestination after the destination loaded the state, tell it to run the device
 * @param limits what a destination accepts
 * @param maxConcurrent the most migrations the agent runs at once, as source and destination together
 * @param handshakeTimeoutMillis destination: how long a connection may take to deliver its whole HELLO
 * @param journalDir where the node's journal of migrations under way is kept ({@link Journal}); null for none
 * @param connectionPerDevice source: offer each device of a migration of several its own connection (the feature
 *        {@code device-connections}), so a slow destination device does not hold back its siblings
 */
public record MigrationOptions(int chunkSize, long progressTimeoutMillis, int deviceWriteQueueBytes,
        boolean startDestination, Limits limits, int maxConcurrent, long handshakeTimeoutMillis, String journalDir,
        boolean connectionPerDevice) {

    public static MigrationOptions fromJson(JsonObject json) {
        JsonObject j = json == null ? new JsonObject() : json;
        int chunk = j.getInteger("chunkSize", 1 << 20);
        Limits limits = new Limits(j.getInteger("maxControlPayload", Limits.DEFAULT.maxControlPayload()),
                j.getInteger("maxChunk", Math.max(Limits.DEFAULT.maxChunk(), chunk)));
        if (chunk < 4096 || chunk > limits.maxChunk()) {
            throw new IllegalArgumentException("migration.chunkSize " + chunk + " must be from 4096 to maxChunk "
                    + limits.maxChunk());
        }
        return new MigrationOptions(chunk, j.getLong("progressTimeoutMillis", 30_000L),
                j.getInteger("deviceWriteQueueBytes", 4 << 20), j.getBoolean("startDestination", true), limits,
                j.getInteger("maxConcurrent", 16), 10_000L, blankToNull(j.getString("journalDir")),
                j.getBoolean("connectionPerDevice", true));
    }

    private static String blankToNull(String s) {
        return s == null || s.isBlank() ? null : s;
    }

    public MigrationOptions withChunkSize(int bytes) {
        return new MigrationOptions(bytes, progressTimeoutMillis, deviceWriteQueueBytes, startDestination, limits,
                maxConcurrent, handshakeTimeoutMillis, journalDir, connectionPerDevice);
    }

    /** The same, with the stream endpoint's handshake timeout (stream.handshakeTimeoutMillis). */
    public MigrationOptions withHandshakeTimeout(long millis) {
        return new MigrationOptions(chunkSize, progressTimeoutMillis, deviceWriteQueueBytes, startDestination, limits,
                maxConcurrent, millis, journalDir, connectionPerDevice);
    }
}
