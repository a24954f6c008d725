package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.VerticleBase;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;

/**
 * The agent's TCP stream endpoint: every accepted connection is handed, as a {@link StreamConnection}, to the
 * destination side of the migration engine.
 */
public final class StreamServerVerticle extends VerticleBase {

    private final TransportOptions options;
    private final Handler<StreamConnection> onConnection;
    private NetServer server;

    public StreamServerVerticle(TransportOptions options, Handler<StreamConnection> onConnection) {
        this.options = options;
        this.onConnection = onConnection;
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

    /** The port the endpoint listens on (the chosen one when configured with 0). */
    public int actualPort() {
        return server.actualPort();
    }
}
