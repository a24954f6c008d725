package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.net.NetSocket;
import io.vertx.core.streams.ReadStream;
import io.vertx.core.streams.WriteStream;

/** A {@link StreamConnection} over a TCP socket. */
public final class NetSocketConnection implements StreamConnection {

    private final NetSocket socket;

    public NetSocketConnection(NetSocket socket, int writeQueueMaxSize) {
        this.socket = socket;
        socket.setWriteQueueMaxSize(writeQueueMaxSize);
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
        socket.closeHandler(handler);
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
        return String.valueOf(socket.remoteAddress());
    }
}
