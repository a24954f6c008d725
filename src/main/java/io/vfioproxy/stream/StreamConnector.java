package io.vfioproxy.stream;

import io.vertx.core.Future;

/** Opens agent-to-agent connections; the transport layer implements it for TCP and WebSocket. */
@FunctionalInterface
public interface StreamConnector {

    /** Connects to the destination agent at {@code endpoint}. */
    Future<StreamConnection> connect(StreamEndpoint endpoint);
}
