package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.WebSocketBase;
import io.vertx.core.streams.ReadStream;
import io.vertx.core.streams.WriteStream;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.vertx.DirectInput;
import io.vfioproxy.vertx.VertxInternals;

/**
 * A {@link StreamConnection} over a WebSocket: every write is one binary frame, and the receiver's decoder takes
 * frames of any size and boundary, so the protocol is the same as over TCP. Made on the WebSocket's event loop as
 * it is accepted or connected, its input hands on the frames Netty decoded without Vert.x's copy of each into the
 * heap ({@link DirectInput}); made elsewhere, it reads the WebSocket as Vert.x delivers it.
 */
public final class WebSocketConnection implements StreamConnection {

    /** The largest WebSocket frame either side takes: one data frame of the largest chunk with its headers. */
    public static final int MAX_FRAME = (16 << 20) + 64;

    private final WebSocketBase socket;
    /** The frames as Netty decoded them, or {@code null} where the WebSocket is read as it is. */
    private final DirectInput direct;
    private final WriteStream<Buffer> output;
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
        this.direct = VertxInternals.directInput(socket);
        this.output = VertxInternals.output(socket);
        closeHandler(v -> { });
    }

    @Override
    public ReadStream<Buffer> input() {
        return direct != null ? direct : socket;
    }

    /** See {@link DirectInput#retainCurrent()}. */
    @Override
    public Runnable retainInput() {
        return direct != null ? direct.retainCurrent() : () -> { };
    }

    @Override
    public WriteStream<Buffer> output() {
        return output;
    }

    @Override
    public void closeHandler(Handler<Void> handler) {
        Handler<Void> closed = v -> {
            onClose.run();
            handler.handle(null);
        };
        if (direct != null) {
            direct.closeHandler(closed);
        } else {
            socket.closeHandler(closed);
        }
    }

    @Override
    public void shutdownHandler(Handler<Void> handler) {
        socket.shutdownHandler(handler);
    }

    /** Closes the WebSocket; what waits behind a pause is released, not delivered. */
    @Override
    public Future<Void> close() {
        if (direct != null) {
            direct.discard();
        }
        return socket.close();
    }

    @Override
    public String peer() {
        return peer;
    }
}
