package io.vfioproxy.transport;

import io.vertx.core.Handler;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.security.ConnectionLimits;
import io.vfioproxy.security.Credentials;
import io.vfioproxy.security.Refusals;
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
    private final Credentials credentials;
    private final ConnectionLimits limits;
    private final Refusals refusals;
    private final Handler<StreamConnection> onConnection;

    public WebSocketStreamEndpoint(TransportOptions options, Credentials credentials, ConnectionLimits limits,
            Refusals refusals, Handler<StreamConnection> onConnection) {
        this.options = options;
        this.credentials = credentials;
        this.limits = limits;
        this.refusals = refusals;
        this.onConnection = onConnection;
    }

    /**
     * Upgrades {@code request} and hands the connection on. With security on, the request must have come over TLS
     * with a client certificate the agents' CA signed (the API's server asks for one and checks any it gets): a
     * stream writes into devices, and only an agent may send one. Otherwise 401 or 403, and nothing is upgraded.
     */
    public void handle(HttpServerRequest request) {
        String peer = request.remoteAddress() == null ? "?" : request.remoteAddress().hostAddress();
        if (credentials.secure()) {
            String refusal = null;
            if (!request.isSSL()) {
                refusal = "the stream needs TLS (wss://)";
            } else {
                try {
                    if (request.connection().peerCertificates().isEmpty()) {
                        refusal = "no client certificate";
                    }
                } catch (javax.net.ssl.SSLPeerUnverifiedException e) {
                    refusal = "no client certificate";
                }
            }
            if (refusal != null) {
                refusals.refused("a WebSocket stream", peer, refusal);
                request.response().setStatusCode(401).putHeader("Content-Type", "application/json")
                        .end(new JsonObject().put("error", new JsonObject().put("status", 401).put("message",
                                "the migration stream needs a client certificate signed by the agents' CA: "
                                        + refusal)).encode());
                return;
            }
        }
        ConnectionLimits.Permit permit = limits.admit("a WebSocket stream", peer, refusals);
        if (permit == null) {
            request.response().setStatusCode(503).end();
            return;
        }
        request.toWebSocket().onComplete(ar -> {
            if (ar.failed()) {
                permit.release();
                return;
            }
            onConnection.handle(new WebSocketConnection(ar.result(), options.writeQueueMaxSize(), permit::release));
        });
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
