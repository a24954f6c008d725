package io.vfioproxy.api;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.util.ArrayList;
import java.util.List;

/**
 * The HTTP API's settings ("api" in conf/agent.json).
 *
 * @param enabled false to serve no API (the demo's destination agent)
 * @param host the listen address
 * @param port the port, 8080 by default; 0 picks a free one
 * @param bridgeInbound event-bus addresses SockJS clients may send to; none by default (read-only bridge)
 * @param maxConnections the most HTTP connections the API holds at once (256)
 * @param maxConnectionsPerPeer the most from one peer address (64)
 */
public record ApiOptions(boolean enabled, String host, int port, List<String> bridgeInbound, int maxConnections,
        int maxConnectionsPerPeer) {

    public static final int DEFAULT_PORT = 8080;

    public ApiOptions {
        bridgeInbound = List.copyOf(bridgeInbound);
    }

    public static ApiOptions fromJson(JsonObject json) {
        JsonObject j = json == null ? new JsonObject() : json;
        List<String> inbound = new ArrayList<>();
        j.getJsonArray("bridgeInbound", new JsonArray()).forEach(a -> inbound.add(String.valueOf(a)));
        return new ApiOptions(j.getBoolean("enabled", true), j.getString("host", "0.0.0.0"),
                j.getInteger("port", DEFAULT_PORT), inbound, j.getInteger("maxConnections", 256),
                j.getInteger("maxConnectionsPerPeer", 64));
    }
}
