package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.http.WebSocketClientOptions;
import io.vertx.core.http.WebSocketConnectOptions;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;
import io.vfioproxy.security.Credentials;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.stream.StreamConnector;
import io.vfioproxy.stream.StreamEndpoint;

/**
 * Opens agent-to-agent connections over TCP or WebSocket, with the agent's TLS identity when security is on (and
 * the next one once its files change). Holds its clients for the agent's lifetime: Vert.x 5 closes a client nothing
 * references at the next GC.
 */
public final class StreamClient implements StreamConnector {

    private final NetClient tcp;
    private final WebSocketClient ws;
    private final Credentials credentials;
    private final int writeQueueMaxSize;
    private final int receiveBufferMax;

    public StreamClient(Vertx vertx, TransportOptions options, Credentials credentials) {
        this.credentials = credentials;
        NetClientOptions tcpOptions = new NetClientOptions()
                .setTcpNoDelay(true)
                .setConnectTimeout(options.connectTimeoutMillis());
        WebSocketClientOptions wsOptions = new WebSocketClientOptions()
                .setTcpNoDelay(true)
                .setConnectTimeout(options.connectTimeoutMillis())
                .setMaxFrameSize(WebSocketConnection.MAX_FRAME)
                .setMaxMessageSize(WebSocketConnection.MAX_FRAME)
                .setTryUsePerFrameCompression(false)
                .setTryUsePerMessageCompression(false)
                // Between agents masking protects nothing (no browser, no cache to poison) and costs a pass over
                // every byte; the destination accepts unmasked frames (docs/PROTOCOL.md).
                .setSendUnmaskedFrames(true);
        if (credentials.secure()) {
            credentials.tls().apply(tcpOptions);
            credentials.tls().apply(wsOptions);
        }
        this.tcp = vertx.createNetClient(tcpOptions);
        this.ws = vertx.createWebSocketClient(wsOptions);
        credentials.onTlsChange(tls -> {
            tcp.updateSSLOptions(tls.client());
            ws.updateSSLOptions(tls.client());
        });
        this.writeQueueMaxSize = options.writeQueueMaxSize();
        this.receiveBufferMax = options.receiveBufferMax();
    }

    @Override
    public Future<StreamConnection> connect(StreamEndpoint endpoint) {
        if (endpoint.isWebSocket()) {
            if (credentials.secure() != endpoint.isTls()) {
                return Future.failedFuture(new IllegalArgumentException("destination " + endpoint + ": "
                        + (credentials.secure() ? "security is on, so the WebSocket stream is wss://"
                                : "security is off (security.insecure), so the WebSocket stream is ws://")));
            }
            return ws.connect(new WebSocketConnectOptions().setHost(endpoint.host()).setPort(endpoint.port())
                    .setURI(endpoint.path()).setSsl(endpoint.isTls()))
                    .map(socket -> new WebSocketConnection(socket, writeQueueMaxSize));
        }
        return tcp.connect(endpoint.port(), endpoint.host())
                .map(socket -> new NetSocketConnection(socket, writeQueueMaxSize, receiveBufferMax));
    }

    public Future<Void> close() {
        return Future.join(tcp.close(), ws.close()).mapEmpty();
    }
}
