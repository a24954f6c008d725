package io.vfioproxy.transport;

import io.netty.handler.ssl.SslContext;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.VerticleBase;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.security.ConnectionLimits;
import io.vfioproxy.security.Credentials;
import io.vfioproxy.security.Refusals;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.vertx.VertxInternals;
import java.util.function.Supplier;

/**
 * The agent's TCP stream endpoint: every accepted connection, within the connection limits, is upgraded to mutual
 * TLS when security is on (the peer's certificate must be signed by the agents' CA; the identity is the one the
 * files hold now, so a rotated certificate serves the next handshake), then handed on as a {@link
 * StreamConnection}. A refused peer is logged once per reason with its address.
 */
public final class StreamServerVerticle extends VerticleBase {

    private final TransportOptions options;
    private final Credentials credentials;
    private final ConnectionLimits limits;
    private final Refusals refusals;
    private final Handler<StreamConnection> onConnection;
    private final Supplier<Future<?>> beforeStop;
    private NetServer server;
    /** The TLS context new connections get: rebuilt when the certificate files change. */
    private volatile SslContext tls;

    /**
     * @param beforeStop runs before the server and its connections close: ends the migrations they carry, so
     *        each says why it ended and leaves its devices safe
     */
    public StreamServerVerticle(TransportOptions options, Credentials credentials, ConnectionLimits limits,
            Refusals refusals, Handler<StreamConnection> onConnection, Supplier<Future<?>> beforeStop) {
        this.options = options;
        this.credentials = credentials;
        this.limits = limits;
        this.refusals = refusals;
        this.onConnection = onConnection;
        this.beforeStop = beforeStop;
    }

    @Override
    public Future<?> start() {
        NetServerOptions serverOptions = new NetServerOptions()
                .setHost(options.host())
                .setPort(options.port())
                .setTcpNoDelay(true);
        server = vertx.createNetServer(serverOptions);
        server.connectHandler(this::accepted);
        if (!credentials.secure()) {
            return server.listen();
        }
        credentials.onTlsChange(next -> {
            // Called on a worker, as the files were read there.
            try {
                tls = next.streamServer(vertx);
            } catch (Exception e) {
                refusals.problem("the new certificate files cannot make a TLS context (" + e.getMessage()
                        + "); new connections keep the last good one");
            }
        });
        return vertx.executeBlocking(() -> credentials.tls().streamServer(vertx))
                .compose(context -> {
                    tls = context;
                    return server.listen();
                });
    }

    private void accepted(NetSocket socket) {
        String peer = socket.remoteAddress().hostAddress();
        ConnectionLimits.Permit permit = limits.admit("a stream connection", peer, refusals);
        if (permit == null) {
            socket.close();
            return;
        }
        // The input takes what arrives from the first byte, so nothing that comes with the handshake is lost.
        NetSocketConnection connection = new NetSocketConnection(socket, options.writeQueueMaxSize(),
                options.receiveBufferMax(), permit::release);
        if (!credentials.secure()) {
            onConnection.handle(connection);
            return;
        }
        VertxInternals.startServerTls(socket, tls, options.handshakeTimeoutMillis()).onComplete(ar -> {
            if (ar.succeeded()) {
                onConnection.handle(connection);
            } else {
                refusals.refused("a stream connection", peer, "TLS: " + describe(ar.cause()));
                socket.close();
            }
        });
    }

    /** A handshake failure in words: Netty's exceptions often say little at the top (the timeout has no message). */
    private static String describe(Throwable cause) {
        Throwable t = cause;
        while (t.getMessage() == null && t.getCause() != null) {
            t = t.getCause();
        }
        String message = t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
        // A plaintext peer's bytes come back hex-dumped in the message: the start says enough.
        return message.length() > 120 ? message.substring(0, 120) + "..." : message;
    }

    /** Vert.x closes the server, and with it every connection, once this completes. */
    @Override
    public Future<?> stop() {
        return beforeStop.get();
    }

    /** The port the endpoint listens on (the chosen one when configured with 0). */
    public int actualPort() {
        return server.actualPort();
    }
}
