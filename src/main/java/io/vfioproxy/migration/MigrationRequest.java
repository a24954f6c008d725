package io.vfioproxy.migration;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.transport.StreamEndpoint;

/**
 * A request to migrate one device of this agent to a destination agent.
 *
 * @param device the source device on this agent
 * @param destination the destination agent's stream endpoint
 * @param targetDevice the device on the destination that receives the state (defaults to {@code device})
 * @param chunkSize the chunk size for this migration, or 0 for the agent's default
 */
public record MigrationRequest(String device, StreamEndpoint destination, String targetDevice, int chunkSize) {

    /**
     * Reads {@code {"device": "sim0", "destination": "host:7070", "targetDevice": "sim1", "chunkSize": 1048576}}.
     *
     * @throws IllegalArgumentException naming the missing or malformed field
     */
    public static MigrationRequest fromJson(JsonObject json) {
        String device = json.getString("device");
        if (device == null || device.isBlank()) {
            throw new IllegalArgumentException("'device' is required: the source device on this agent");
        }
        String destination = json.getString("destination");
        if (destination == null || destination.isBlank()) {
            throw new IllegalArgumentException("'destination' is required: the destination agent as host:port");
        }
        Object chunk = json.getValue("chunkSize", 0);
        if (!(chunk instanceof Number)) {
            throw new IllegalArgumentException("'chunkSize' must be a number of bytes");
        }
        return new MigrationRequest(device, StreamEndpoint.parse(destination),
                json.getString("targetDevice", device), ((Number) chunk).intValue());
    }

    public JsonObject toJson() {
        return new JsonObject().put("device", device).put("destination", destination.toString())
                .put("targetDevice", targetDevice).put("chunkSize", chunkSize);
    }
}
