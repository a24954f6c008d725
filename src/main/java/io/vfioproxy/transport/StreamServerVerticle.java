package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.VerticleBase;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;
import io.vfioproxy.stream.StreamConnection;
import java.util.function.Supplier;

/**
 * The agent's TCP stream endpoint: every accepted connection is handed, as a {@link StreamConnection}, to the
 * destination side of the migration engine.
 */
public final class StreamServerVerticle extends VerticleBase {

    private final TransportOptions options;
    private final Handler<StreamConnection> onConnection;
    private final Supplier<Future<?>> beforeStop;
    private NetServer server;

    /**
     * @param beforeStop runs before the server and its connections close: ends the migrations they carry, so
     *        each says why it ended and leaves its devices safe
     */
    public StreamServerVerticle(TransportOptions options, Handler<StreamConnection> onConnection,
            Supplier<Future<?>> beforeStop) {
        this.options = options;
        this.onConnection = onConnection;
        this.beforeStop = beforeStop;
    }

    @Override
    public Future<?> start() {
        NetServerOptions serverOptions = new NetServerOptions()
                .setHost(options.host())
                .setPort(options.port())
                .setTcpNoDelay(true);
        if (options.tls() != null) {
            options.tls().apply(serverOptions);
        }
        server = vertx.createNetServer(serverOptions);
        server.connectHandler(socket -> onConnection.handle(new NetSocketConnection(socket,
                options.writeQueueMaxSize(), options.receiveBufferMax())));
        return server.listen();
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
