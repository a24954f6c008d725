package io.vfioproxy.api;

import io.vertx.core.json.JsonObject;

/**
 * The HTTP API's settings ("api" in conf/agent.json).
 *
 * @param enabled false to serve no API (the demo's destination agent)
 * @param host the listen address
 * @param port the port, 8080 by default; 0 picks a free one
 */
public record ApiOptions(boolean enabled, String host, int port) {

    public static final int DEFAULT_PORT = 8080;

    public static ApiOptions fromJson(JsonObject json) {
        JsonObject j = json == null ? new JsonObject() : json;
        return new ApiOptions(j.getBoolean("enabled", true), j.getString("host", "0.0.0.0"),
                j.getInteger("port", DEFAULT_PORT));
    }
}
