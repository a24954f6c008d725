package io.vfioproxy.vertx;

import io.netty.buffer.ByteBuf;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.util.ReferenceCountUtil;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.internal.buffer.BufferInternal;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.streams.ReadStream;
import io.vfioproxy.util.Demand;
import java.util.ArrayDeque;

/**
 * A TCP socket's input as the pooled buffers Netty read into, for a pipe. Vert.x's own handler copies every read
 * into a new heap buffer; this one hands the pooled (direct) buffer on, wrapped without a copy, and releases it when
 * the handler returns. A consumer that keeps part of it past the handler must retain it ({@link #retainCurrent()}),
 * as the destination does for data still on its way to the device.
 *
 * <p>It keeps its own flow control, because Vert.x 5.0.7's does two things wrong for a paused reader: it reports
 * the connection's end before the reads it queued behind the pause reach the reader, and it never releases those
 * reads when the connection closes. Here a pause stops Netty reading the socket (auto-read off), the reads already
 * under way wait in this input's queue, the peer's end is reported only after they were delivered, and a local
 * {@link #discard()} releases them. Netty reads up to {@code receiveBufferMax} bytes at once (its default, 64 KiB,
 * costs a third of the throughput on loopback).
 *
 * <p>Runs on the socket's event loop.
 */
public final class DirectInput implements ReadStream<Buffer> {

    private final NetSocketInternal socket;
    private final Channel channel;
    private final ArrayDeque<ByteBuf> queue = new ArrayDeque<>();
    private Handler<Buffer> handler;
    private Handler<Void> endHandler;
    private Handler<Void> closeHandler;
    private final Demand demand = new Demand();
    private ByteBuf current;
    /** The channel closed; the end is reported once the queue is empty. */
    private boolean closed;
    private boolean endReported;
    /** This side gave up on the input: what waits and what still comes is released, not delivered. */
    private boolean discarded;
    private boolean delivering;

    DirectInput(NetSocketInternal socket, int receiveBufferMax) {
        this.socket = socket;
        this.channel = socket.channelHandlerContext().channel();
        channel.config().setRecvByteBufAllocator(
                new AdaptiveRecvByteBufAllocator(64, Math.min(65536, receiveBufferMax), receiveBufferMax));
        socket.messageHandler(this::arrived);
        socket.closeHandler(v -> {
            closed = true;
            deliver();
        });
    }

    private void arrived(Object msg) {
        if (!(msg instanceof ByteBuf buf) || discarded) {
            ReferenceCountUtil.release(msg);
            return;
        }
        queue.add(buf);
        deliver();
    }

    private void deliver() {
        if (delivering) {
            return;
        }
        delivering = true;
        try {
            while (demand.wanted() && !queue.isEmpty() && handler != null) {
                ByteBuf buf = queue.poll();
                demand.take();
                current = buf;
                try {
                    handler.handle(BufferInternal.buffer(buf));
                } finally {
                    current = null;
                    buf.release();
                }
            }
        } finally {
            delivering = false;
        }
        if (closed && (queue.isEmpty() || discarded) && !endReported) {
            endReported = true;
            release();
            if (endHandler != null) {
                endHandler.handle(null);
            }
            if (closeHandler != null) {
                closeHandler.handle(null);
            }
        }
    }

    private void release() {
        queue.forEach(ByteBuf::release);
        queue.clear();
    }

    /**
     * Drops what waits behind a pause and whatever still arrives: this side closes the connection and will not read
     * it. The end is reported as the channel closes.
     */
    public void discard() {
        discarded = true;
        release();
    }

    /** Called once when the connection closed, after every read before the close was delivered (or discarded). */
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
        this.handler = handler;
        deliver();
        return this;
    }

    @Override
    public ReadStream<Buffer> exceptionHandler(Handler<Throwable> handler) {
        socket.exceptionHandler(handler);
        return this;
    }

    @Override
    public ReadStream<Buffer> pause() {
        demand.pause();
        channel.config().setAutoRead(false);
        return this;
    }

    @Override
    public ReadStream<Buffer> resume() {
        return fetch(Long.MAX_VALUE);
    }

    @Override
    public ReadStream<Buffer> fetch(long amount) {
        demand.fetch(amount);
        deliver();
        if (demand.wanted() && !closed) {
            channel.config().setAutoRead(true);
        }
        return this;
    }

    @Override
    public ReadStream<Buffer> endHandler(Handler<Void> endHandler) {
        this.endHandler = endHandler;
        return this;
    }
}
