package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.net.NetSocket;
import io.vertx.core.streams.ReadStream;
import io.vertx.core.streams.WriteStream;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.vertx.DirectInput;
import io.vfioproxy.vertx.VertxInternals;

/**
 * A {@link StreamConnection} over a TCP socket. Its input hands on Netty's pooled buffers without copying them
 * into the heap ({@link DirectInput}); its output is full while the socket's channel is not writable
 * ({@link VertxInternals#output(NetSocket)}).
 */
public final class NetSocketConnection implements StreamConnection {

    private final NetSocket socket;
    private final DirectInput input;
    private final WriteStream<Buffer> output;
    private final Runnable onClose;

    public NetSocketConnection(NetSocket socket, int writeQueueMaxSize, int receiveBufferMax) {
        this(socket, writeQueueMaxSize, receiveBufferMax, () -> { });
    }

    /** @param onClose runs once the connection closed (a connection permit's release) */
    public NetSocketConnection(NetSocket socket, int writeQueueMaxSize, int receiveBufferMax, Runnable onClose) {
        this.socket = socket;
        socket.setWriteQueueMaxSize(writeQueueMaxSize);
        this.input = VertxInternals.directInput(socket, receiveBufferMax);
        this.output = VertxInternals.output(socket);
        this.onClose = onClose;
        input.closeHandler(v -> onClose.run());
    }

    @Override
    public ReadStream<Buffer> input() {
        return input;
    }

    /** See {@link DirectInput#retainCurrent()}. */
    @Override
    public Runnable retainInput() {
        return input.retainCurrent();
    }

    @Override
    public WriteStream<Buffer> output() {
        return output;
    }

    @Override
    public void closeHandler(Handler<Void> handler) {
        input.closeHandler(v -> {
            onClose.run();
            handler.handle(null);
        });
    }

    @Override
    public void shutdownHandler(Handler<Void> handler) {
        socket.shutdownHandler(handler);
    }

    /** Closes the socket; what waits behind a pause is released, not delivered. */
    @Override
    public Future<Void> close() {
        input.discard();
        return socket.close();
    }

    @Override
    public String peer() {
        return String.valueOf(socket.remoteAddress());
    }
}
