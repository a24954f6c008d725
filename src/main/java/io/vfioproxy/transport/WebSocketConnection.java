package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.WebSocketBase;
import io.vertx.core.streams.ReadStream;
import io.vertx.core.streams.WriteStream;
import io.vfioproxy.stream.StreamConnection;

/**
 * A {@link StreamConnection} over a WebSocket: every write is one binary frame, and the receiver's decoder takes
 * frames of any size and boundary, so the protocol is the same as over TCP.
 */
public final class WebSocketConnection implements StreamConnection {

    /** The largest WebSocket frame either side takes: one data frame of the largest chunk with its headers. */
    public static final int MAX_FRAME = (16 << 20) + 64;

    private final WebSocketBase socket;
    private final String peer;
    private final Runnable onClose;

    public WebSocketConnection(WebSocketBase socket, int writeQueueMaxSize) {
        this(socket, writeQueueMaxSize, () -> { });
    }

    /** @param onClose runs once the connection closed (a connection permit's release) */
    public WebSocketConnection(WebSocketBase socket, int writeQueueMaxSize, Runnable onClose) {
        this.socket = socket;
        this.peer = "ws " + socket.remoteAddress();
        this.onClose = onClose;
        socket.setWriteQueueMaxSize(writeQueueMaxSize);
        socket.closeHandler(v -> onClose.run());
    }

    @Override
    public ReadStream<Buffer> input() {
        return socket;
    }

    @Override
    public WriteStream<Buffer> output() {
        return socket;
    }

    @Override
    public void closeHandler(Handler<Void> handler) {
        socket.closeHandler(v -> {
            onClose.run();
            handler.handle(null);
        });
    }

    @Override
    public void shutdownHandler(Handler<Void> handler) {
        socket.shutdownHandler(handler);
    }

    @Override
    public Future<Void> close() {
        return socket.close();
    }

    @Override
    public String peer() {
        return peer;
    }
}
