package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.VerticleBase;
import io.vertx.core.http.ClientAuth;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.security.Credentials;
import io.vfioproxy.security.Refusals;
import io.vfioproxy.stream.StreamConnection;
import java.util.concurrent.TimeUnit;
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
        return server.listen();
    }

    private void accepted(NetSocket socket) {
        String peer = socket.remoteAddress().hostAddress();
        String[] why = new String[1];
        ConnectionLimits.Permit permit = limits.admit(peer, why);
        if (permit == null) {
            refusals.refused("a stream connection", peer, why[0]);
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
        socket.upgradeToSsl(credentials.tls().server(ClientAuth.REQUIRED)
                .setSslHandshakeTimeout(options.handshakeTimeoutMillis())
                .setSslHandshakeTimeoutUnit(TimeUnit.MILLISECONDS), null, null).onComplete(ar -> {
                    if (ar.succeeded()) {
                        onConnection.handle(connection);
                    } else {
                        refusals.refused("a stream connection", peer, "TLS: " + ar.cause().getMessage());
                        socket.close();
                    }
                });
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
