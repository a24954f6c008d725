package io.vfioproxy.api;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.util.ArrayList;
import java.util.List;

/**
 * Which agent a request is for, in a cluster: a migration naming {@code "node-a/gpu0"} is for agent node-a's
 * gpu0, a relay with {@code "agent": "node-a"} for node-a; a bare device name, or this agent's own, is local.
 */
final class Routing {

    private Routing() {
    }

    /**
     * The agent other than {@code self} that a migration's devices belong to, or null when they are this agent's.
     *
     * @throws IllegalArgumentException when its devices name more than one agent (one migration, one source agent)
     */
    static String migrationOwner(String self, JsonObject body) {
        List<String> owners = new ArrayList<>();
        for (String device : devices(body)) {
            int slash = device.indexOf('/');
            String owner = slash < 0 ? self : device.substring(0, slash);
            if (!owners.contains(owner)) {
                owners.add(owner);
            }
        }
        if (owners.size() > 1) {
            throw new IllegalArgumentException("the devices of one migration belong to one agent; these name "
                    + String.join(" and ", owners));
        }
        return owners.isEmpty() || owners.get(0).equals(self) ? null : owners.get(0);
    }

    /** The agent other than {@code self} a relay is asked of ({@code "agent"}), or null. */
    static String relayOwner(String self, JsonObject body) {
        String owner = body.getString("agent");
        return owner == null || owner.equals(self) ? null : owner;
    }

    /** Takes the routing field off a relay request that runs here: the relay itself does not name its agent. */
    static JsonObject localRelay(JsonObject body) {
        body.remove("agent");
        return body;
    }

    /** Takes {@code self/} off the device names of a migration routed to this agent (in place). */
    static JsonObject local(String self, JsonObject body) {
        String prefix = self + "/";
        if (body.getString("device", "").startsWith(prefix)) {
            body.put("device", body.getString("device").substring(prefix.length()));
        }
        JsonArray pairs = body.getJsonArray("devices");
        if (pairs != null) {
            for (Object p : pairs) {
                JsonObject pair = (JsonObject) p;
                if (pair.getString("device", "").startsWith(prefix)) {
                    pair.put("device", pair.getString("device").substring(prefix.length()));
                }
            }
        }
        return body;
    }

    private static List<String> devices(JsonObject body) {
        List<String> all = new ArrayList<>();
        if (body.getString("device") != null) {
            all.add(body.getString("device"));
        }
        for (Object p : body.getJsonArray("devices", new JsonArray())) {
            if (p instanceof JsonObject pair && pair.getString("device") != null) {
                all.add(pair.getString("device"));
            }
        }
        return all;
    }
}
