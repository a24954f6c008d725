package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;

/**
 * Opens agent-to-agent TCP connections. Holds its NetClient for the agent's lifetime: Vert.x 5 closes a client
 * nothing references at the next GC.
 */
public final class TcpConnector {

    private final NetClient client;
    private final int writeQueueMaxSize;

    public TcpConnector(Vertx vertx, TransportOptions options) {
        this.client = vertx.createNetClient(new NetClientOptions()
                .setTcpNoDelay(true)
                .setConnectTimeout(options.connectTimeoutMillis()));
        this.writeQueueMaxSize = options.writeQueueMaxSize();
    }

    public Future<StreamConnection> connect(StreamEndpoint endpoint) {
        return client.connect(endpoint.port(), endpoint.host())
                .map(socket -> new NetSocketConnection(socket, writeQueueMaxSize));
    }

    public Future<Void> close() {
        return client.close();
    }
}
