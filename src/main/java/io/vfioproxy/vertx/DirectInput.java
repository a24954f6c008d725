package io.vfioproxy.vertx;

import io.netty.buffer.ByteBuf;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.util.ReferenceCountUtil;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.internal.buffer.BufferInternal;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.streams.ReadStream;

/**
 * A TCP socket's input as the pooled buffers Netty read into, for a pipe. Vert.x's own handler copies every read
 * into a new heap buffer; this one hands the pooled (direct) buffer on, wrapped without a copy, and releases it when
 * the handler returns. A consumer that keeps part of it past the handler must retain it ({@link #retainCurrent()}),
 * as the destination does for data still on its way to the device.
 *
 * <p>Two more things public API cannot do: Netty reads up to {@code receiveBufferMax} bytes at once (its default,
 * 64 KiB, costs a third of the throughput on loopback), and reads that arrived while the input was paused, which
 * Vert.x 5.0 queues and never releases when the connection closes, are released before the close is reported.
 */
public final class DirectInput implements ReadStream<Buffer> {

    private final NetSocketInternal socket;
    private ByteBuf current;
    private Handler<Void> closeHandler;

    DirectInput(NetSocketInternal socket, int receiveBufferMax) {
        this.socket = socket;
        socket.channelHandlerContext().channel().config().setRecvByteBufAllocator(
                new AdaptiveRecvByteBufAllocator(64, Math.min(65536, receiveBufferMax), receiveBufferMax));
        socket.closeHandler(v -> closed());
    }

    private void closed() {
        socket.messageHandler(ReferenceCountUtil::release);
        socket.resume();
        if (closeHandler != null) {
            closeHandler.handle(null);
        }
    }

    /** Called once when the connection closed, after every queued read was released. */
    public void closeHandler(Handler<Void> handler) {
        this.closeHandler = handler;
    }

    /**
     * Keeps the buffer being handled alive until the returned action runs; a no-op outside a handler.
     */
    public Runnable retainCurrent() {
        ByteBuf buf = current;
        if (buf == null) {
            return () -> { };
        }
        buf.retain();
        return buf::release;
    }

    @Override
    public ReadStream<Buffer> handler(Handler<Buffer> handler) {
        if (handler == null) {
            socket.messageHandler(null);
            return this;
        }
        socket.messageHandler(msg -> {
            if (!(msg instanceof ByteBuf buf)) {
                ReferenceCountUtil.release(msg);
                return;
            }
            current = buf;
            try {
                handler.handle(BufferInternal.buffer(buf));
            } finally {
                current = null;
                buf.release();
            }
        });
        return this;
    }

    @Override
    public ReadStream<Buffer> exceptionHandler(Handler<Throwable> handler) {
        socket.exceptionHandler(handler);
        return this;
    }

    @Override
    public ReadStream<Buffer> pause() {
        socket.pause();
        return this;
    }

    @Override
    public ReadStream<Buffer> resume() {
        socket.resume();
        return this;
    }

    /** The socket can only stop or flow: any demand resumes it. */
    @Override
    public ReadStream<Buffer> fetch(long amount) {
        if (amount > 0) {
            socket.resume();
        }
        return this;
    }

    @Override
    public ReadStream<Buffer> endHandler(Handler<Void> endHandler) {
        socket.endHandler(endHandler);
        return this;
    }
}
