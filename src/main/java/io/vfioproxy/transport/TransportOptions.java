package io.vfioproxy.transport;

import io.vertx.core.json.JsonObject;

/**
 * Socket settings of the stream endpoint ("stream" in conf/agent.json).
 *
 * @param host the address the endpoint listens on
 * @param port the TCP port (7070 by default; 0 picks a free one)
 * @param writeQueueMaxSize bytes a connection may queue before the sender is paused
 * @param connectTimeoutMillis how long a source waits for a TCP connection
 * @param receiveBufferMax the most Netty reads from a socket at once
 * @param tls mutual TLS between agents, or null for plaintext
 */
public record TransportOptions(String host, int port, int writeQueueMaxSize, int connectTimeoutMillis,
        int receiveBufferMax, TlsOptions tls) {

    public static final int DEFAULT_PORT = 7070;

    public static TransportOptions fromJson(JsonObject json) {
        JsonObject j = json == null ? new JsonObject() : json;
        return new TransportOptions(
                j.getString("host", "0.0.0.0"),
                j.getInteger("port", DEFAULT_PORT),
                j.getInteger("writeQueueMaxSize", 4 << 20),
                j.getInteger("connectTimeoutMillis", 10_000),
                j.getInteger("receiveBufferMax", 1 << 20),
                TlsOptions.fromJson(j.getJsonObject("tls")));
    }
}
