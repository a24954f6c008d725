package io.vfioproxy.vertx;

import io.netty.buffer.ByteBuf;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.http.websocketx.BinaryWebSocketFrame;
import io.netty.handler.codec.http.websocketx.ContinuationWebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketFrame;
import io.netty.util.ReferenceCountUtil;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.internal.buffer.BufferInternal;
import io.vertx.core.internal.http.WebSocketInternal;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.streams.ReadStream;
import io.vfioproxy.util.Demand;
import java.util.ArrayDeque;
import java.util.function.Consumer;

/**
 * A connection's input as the pooled buffers Netty read into, for a pipe: a TCP socket's reads, or a WebSocket's
 * binary frames. Vert.x's own handlers copy every read (and every received WebSocket frame) into a new heap buffer;
 * this one hands the pooled (direct) buffer on, wrapped without a copy, and releases it when the handler returns.
 * A consumer that keeps part of it past the handler must retain it ({@link #retainCurrent()}), as the destination
 * does for data still on its way to the device.
 *
 * <p>It keeps its own flow control, because Vert.x 5.0.7's does two things wrong for a paused reader: it reports
 * the connection's end before the reads it queued behind the pause reach the reader, and it never releases those
 * reads when the connection closes. Here a pause stops Netty reading the socket (auto-read off), the reads already
 * under way wait in this input's queue, the peer's end is reported only after they were delivered, and a local
 * {@link #discard()} releases them. Netty reads up to {@code receiveBufferMax} bytes at once (its default, 64 KiB,
 * costs a third of the throughput on loopback).
 *
 * <p>A WebSocket's data frames are taken before Vert.x's handler sees them (see {@link #of(WebSocketInternal)} for
 * the handover); its control frames (close, ping, pong) go on to Vert.x, which answers them.
 *
 * <p>Runs on the connection's event loop.
 */
public final class DirectInput implements ReadStream<Buffer> {

    private final Channel channel;
    private final Consumer<Handler<Throwable>> exceptionHandlers;
    private final ArrayDeque<ByteBuf> queue = new ArrayDeque<>();
    /** Frames taken while Vert.x may still deliver earlier ones (a WebSocket's handover), in order. */
    private final ArrayDeque<ByteBuf> held = new ArrayDeque<>();
    private boolean holding;
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

    private DirectInput(Channel channel, Consumer<Handler<Throwable>> exceptionHandlers) {
        this.channel = channel;
        this.exceptionHandlers = exceptionHandlers;
    }

    /** A TCP socket's input; Netty reads up to {@code receiveBufferMax} bytes at once. */
    static DirectInput of(NetSocketInternal socket, int receiveBufferMax) {
        Channel channel = socket.channelHandlerContext().channel();
        DirectInput input = new DirectInput(channel, socket::exceptionHandler);
        channel.config().setRecvByteBufAllocator(
                new AdaptiveRecvByteBufAllocator(64, Math.min(65536, receiveBufferMax), receiveBufferMax));
        socket.messageHandler(input::arrived);
        socket.closeHandler(v -> input.channelClosed());
        return input;
    }

    /**
     * A WebSocket's binary data, frame by frame, or {@code null} when called off the channel's event loop (the
     * handover below needs that thread; the caller then reads the WebSocket itself). A handler ahead of Vert.x's in
     * the channel's pipeline takes the binary and continuation frames and passes every other frame on.
     *
     * <p>Vert.x may hold frames it decoded before the handler was there: a client's WebSocket comes paused with the
     * frames that arrived with the handshake's answer, and frames read while it was paused wait in its queue. Those
     * come first, through Vert.x's handler (copies, as Vert.x made them); the frames the new handler takes meanwhile
     * are held behind them. Resuming Vert.x's queue drains it in a task on the event loop, so a task queued after
     * that resume runs once the drain is over and releases the held frames in order.
     */
    static DirectInput of(WebSocketInternal socket) {
        ChannelHandlerContext vertxHandler = socket.channelHandlerContext();
        Channel channel = vertxHandler.channel();
        if (!channel.eventLoop().inEventLoop()) {
            return null;
        }
        DirectInput input = new DirectInput(channel, socket::exceptionHandler);
        input.holding = true;
        vertxHandler.pipeline().addBefore(vertxHandler.name(), "vmp-direct-input", new ChannelInboundHandlerAdapter() {
            @Override
            public void channelRead(ChannelHandlerContext ctx, Object msg) {
                if (msg instanceof BinaryWebSocketFrame || msg instanceof ContinuationWebSocketFrame) {
                    input.arrived(((WebSocketFrame) msg).content());
                } else {
                    ctx.fireChannelRead(msg);
                }
            }

            @Override
            public void channelInactive(ChannelHandlerContext ctx) {
                input.channelClosed();
                ctx.fireChannelInactive();
            }
        });
        // From here on Vert.x's handler sees only what came before and the control frames (close, ping, pong),
        // which it answers.
        socket.handler(early -> input.arrivedFirst(VertxInternals.retainedSlice(early)));
        socket.resume();
        channel.eventLoop().execute(input::handedOver);
        return input;
    }

    /** A frame Vert.x held from before the handover: it goes ahead of every frame held here. */
    private void arrivedFirst(ByteBuf buf) {
        if (discarded) {
            buf.release();
            return;
        }
        queue.add(buf);
        deliver();
    }

    /**
     * Vert.x delivered what it held: the frames held here follow, and this input's own demand rules the channel's
     * reading (the channel may come paused from the HTTP request it was upgraded from, and Vert.x's resume may have
     * set it reading).
     */
    private void handedOver() {
        holding = false;
        if (discarded) {
            held.forEach(ByteBuf::release);
        } else {
            queue.addAll(held);
        }
        held.clear();
        channel.config().setAutoRead(demand.wanted() && !closed);
        deliver();
    }

    private void channelClosed() {
        closed = true;
        deliver();
    }

    private void arrived(Object msg) {
        if (!(msg instanceof ByteBuf buf) || discarded) {
            ReferenceCountUtil.release(msg);
            return;
        }
        if (holding) {
            held.add(buf);
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
        if (closed && !holding && (queue.isEmpty() || discarded) && !endReported) {
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
        held.forEach(ByteBuf::release);
        held.clear();
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
        exceptionHandlers.accept(handler);
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
