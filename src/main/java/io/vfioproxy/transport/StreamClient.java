package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.http.WebSocketClientOptions;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.stream.StreamConnector;
import io.vfioproxy.stream.StreamEndpoint;

/**
 * Opens agent-to-agent connections over TCP or WebSocket. Holds its clients for the agent's lifetime: Vert.x 5
 * closes a client nothing references at the next GC.
 */
public final class StreamClient implements StreamConnector {

    private final NetClient tcp;
    private final WebSocketClient ws;
    private final int writeQueueMaxSize;
    private final int receiveBufferMax;

    public StreamClient(Vertx vertx, TransportOptions options) {
        NetClientOptions tcpOptions = new NetClientOptions()
                .setTcpNoDelay(true)
                .setConnectTimeout(options.connectTimeoutMillis());
        if (options.tls() != null) {
            options.tls().apply(tcpOptions);
        }
        this.tcp = vertx.createNetClient(tcpOptions);
        this.ws = vertx.createWebSocketClient(new WebSocketClientOptions()
                .setTcpNoDelay(true)
                .setConnectTimeout(options.connectTimeoutMillis())
                .setMaxFrameSize(WebSocketConnection.MAX_FRAME)
                .setMaxMessageSize(WebSocketConnection.MAX_FRAME)
                .setTryUsePerFrameCompression(false)
                .setTryUsePerMessageCompression(false)
                // Between agents masking protects nothing (no browser, no cache to poison) and costs a pass over
                // every byte; the destination accepts unmasked frames (docs/PROTOCOL.md).
                .setSendUnmaskedFrames(true));
        this.writeQueueMaxSize = options.writeQueueMaxSize();
        this.receiveBufferMax = options.receiveBufferMax();
    }

    @Override
    public Future<StreamConnection> connect(StreamEndpoint endpoint) {
        if (endpoint.isWebSocket()) {
            return ws.connect(endpoint.port(), endpoint.host(), endpoint.path())
                    .map(socket -> new WebSocketConnection(socket, writeQueueMaxSize));
        }
        return tcp.connect(endpoint.port(), endpoint.host())
                .map(socket -> new NetSocketConnection(socket, writeQueueMaxSize, receiveBufferMax));
    }

    public Future<Void> close() {
        return Future.join(tcp.close(), ws.close()).mapEmpty();
    }
}
