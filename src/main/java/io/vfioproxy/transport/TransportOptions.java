package io.vfioproxy.transport;

import io.vertx.core.json.JsonObject;

/**
 * Socket settings of the stream endpoint ("stream" in conf/agent.json). Its TLS is the agent's security setting.
 *
 * @param host the address the endpoint listens on
 * @param port the TCP port (7070 by default; 0 picks a free one)
 * @param writeQueueMaxSize bytes a connection may queue before the sender is paused
 * @param connectTimeoutMillis how long a source waits for a TCP connection
 * @param receiveBufferMax the most Netty reads from a socket at once
 * @param maxConnections the most agent connections the endpoint holds at once (TCP and WebSocket together)
 * @param maxConnectionsPerPeer the most from one peer address
 * @param handshakeTimeoutMillis how long a new connection may take to complete its TLS handshake and its first frame
 *        (HELLO or RELAY_OPEN) before it is closed
 */
public record TransportOptions(String host, int port, int writeQueueMaxSize, int connectTimeoutMillis,
        int receiveBufferMax, int maxConnections, int maxConnectionsPerPeer, long handshakeTimeoutMillis) {

    public static final int DEFAULT_PORT = 7070;

    public static TransportOptions fromJson(JsonObject json) {
        JsonObject j = json == null ? new JsonObject() : json;
        if (j.containsKey("tls")) {
            throw new IllegalArgumentException("stream.tls is gone: TLS is security.tls, for every endpoint at once");
        }
        return new TransportOptions(
                j.getString("host", "0.0.0.0"),
                j.getInteger("port", DEFAULT_PORT),
                j.getInteger("writeQueueMaxSize", 4 << 20),
                j.getInteger("connectTimeoutMillis", 10_000),
                j.getInteger("receiveBufferMax", 1 << 20),
                j.getInteger("maxConnections", 256),
                j.getInteger("maxConnectionsPerPeer", 64),
                j.getLong("handshakeTimeoutMillis", 10_000L));
    }
}
