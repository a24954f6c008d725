package io.vfioproxy.transport;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.util.ReferenceCountUtil;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.net.NetSocket;
import io.vertx.core.streams.ReadStream;
import io.vertx.core.streams.WriteStream;

/**
 * A {@link StreamConnection} over a TCP socket. Its input hands on Netty's pooled buffers without copying them
 * into the heap ({@link DirectInput}), and Netty reads up to {@code receiveBufferMax} bytes at once (its
 * default, 64 KiB, costs a third of the throughput on loopback).
 */
public final class NetSocketConnection implements StreamConnection {

    private final NetSocket socket;
    private final NetSocketInternal internal;
    private final DirectInput input;
    private Handler<Void> closeHandler;

    public NetSocketConnection(NetSocket socket, int writeQueueMaxSize, int receiveBufferMax) {
        this.socket = socket;
        socket.setWriteQueueMaxSize(writeQueueMaxSize);
        this.internal = (NetSocketInternal) socket;
        internal.channelHandlerContext().channel().config().setRecvByteBufAllocator(
                new AdaptiveRecvByteBufAllocator(64, Math.min(65536, receiveBufferMax), receiveBufferMax));
        this.input = new DirectInput(internal);
        socket.closeHandler(v -> closed());
    }

    /**
     * Reads that arrived while the input was paused wait in a queue Vert.x does not release on close; they can no
     * longer be used, so they are released here before the close is reported.
     */
    private void closed() {
        internal.messageHandler(ReferenceCountUtil::release);
        internal.resume();
        if (closeHandler != null) {
            closeHandler.handle(null);
        }
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
        return socket;
    }

    @Override
    public void closeHandler(Handler<Void> handler) {
        closeHandler = handler;
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
