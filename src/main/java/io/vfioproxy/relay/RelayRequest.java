package io.vfioproxy.relay;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.stream.StreamEndpoint;

/**
 * A relay to start on a source agent: the body of {@code POST /v1/relays}.
 *
 * @param destination the destination agent's stream endpoint ({@code host:port} or {@code ws://host:port})
 * @param target where the destination agent connects each channel: the destination hypervisor's incoming address
 * @param listen where this agent listens for the source hypervisor, or null for a unix socket of its own choosing
 * @param channels how many connections the hypervisor opens (1, or 1 + multifd channels), or 0 for any up to the
 *        configured most
 * @param socketMode the unix socket's mode, or -1 for the configured one
 * @param socketOwner the unix socket's owner, or null for the configured one
 */
public record RelayRequest(StreamEndpoint destination, RelayAddress target, RelayAddress listen, int channels,
        int socketMode, String socketOwner) {

    public static RelayRequest fromJson(JsonObject json) {
        String destination = json.getString("destination");
        if (destination == null) {
            throw new IllegalArgumentException("'destination' is required: the destination agent, host:port or "
                    + "ws://host:port");
        }
        StreamEndpoint to = StreamEndpoint.parse(destination);
        RelayAddress target = RelayAddress.parse(json.getString("target"), "target");
        RelayAddress listen = json.getString("listen") == null ? null
                : RelayAddress.parse(json.getString("listen"), "listen");
        if (listen != null && !listen.isLoopback()) {
            throw new IllegalArgumentException("listen '" + json.getString("listen") + "': a relay listens on this "
                    + "host only (a unix socket, or tcp on 127.0.0.1 or ::1)");
        }
        int channels = json.getInteger("channels", 0);
        if (channels < 0 || channels > 64) {
            throw new IllegalArgumentException("'channels' must be 1 to 64");
        }
        String mode = json.getString("socketMode");
        int socketMode = -1;
        if (mode != null) {
            try {
                socketMode = Integer.parseInt(mode, 8);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("'socketMode' '" + mode + "' is not an octal mode such as 0600");
            }
        }
        return new RelayRequest(to, target, listen, channels, socketMode, json.getString("socketOwner"));
    }

    public JsonObject toJson() {
        JsonObject json = new JsonObject().put("destination", destination.toString()).put("target", target.toString());
        if (listen != null) {
            json.put("listen", listen.toString());
        }
        if (channels > 0) {
            json.put("channels", channels);
        }
        return json;
    }
}
