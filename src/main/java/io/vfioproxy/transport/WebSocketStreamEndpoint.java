package io.vfioproxy.transport;

import io.vertx.core.Handler;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.stream.StreamEndpoint;

/**
 * The stream endpoint over WebSocket, for a destination reachable only through HTTP infrastructure. The agent mounts
 * it on its HTTP server at {@value #PATH}; each upgraded request becomes a {@link StreamConnection} with the same
 * frames, checks and backpressure as the TCP endpoint.
 */
public final class WebSocketStreamEndpoint {

    public static final String PATH = StreamEndpoint.DEFAULT_WS_PATH;

    private final TransportOptions options;
    private final Handler<StreamConnection> onConnection;

    public WebSocketStreamEndpoint(TransportOptions options, Handler<StreamConnection> onConnection) {
        this.options = options;
        this.onConnection = onConnection;
    }

    /** Upgrades {@code request} and hands the connection on. */
    public void handle(HttpServerRequest request) {
        request.toWebSocket().onSuccess(ws -> onConnection.handle(new WebSocketConnection(ws,
                options.writeQueueMaxSize())));
    }

    /**
     * What an HTTP server needs to carry migration streams: frames as large as a data frame, no compression (the
     * state does not compress and the CPU is better spent moving it), and unmasked frames from the source agent
     * (masking guards browsers' caches, and costs a pass over every byte).
     */
    public static HttpServerOptions configure(HttpServerOptions server) {
        return server.setMaxWebSocketFrameSize(WebSocketConnection.MAX_FRAME)
                .setMaxWebSocketMessageSize(WebSocketConnection.MAX_FRAME)
                .setPerFrameWebSocketCompressionSupported(false)
                .setPerMessageWebSocketCompressionSupported(false)
                .setAcceptUnmaskedFrames(true);
    }
}
