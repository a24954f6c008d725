package io.vfioproxy.vertx;

import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.streams.WriteStream;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A connection's output whose queue is full while its Netty channel is not writable, whatever Vert.x believes, and
 * whose drain comes from the channel's writability events.
 *
 * <p>Vert.x 5.0.7 answers {@code writeQueueFull()} for a writer on the channel's event loop from a flag that only a
 * writability event updates, and under TLS that event comes too late to matter: Netty's SslHandler counts what it
 * holds through a tracker that defers the event to a later task. Measured with a peer that reads nothing: 23 MiB
 * written before the queue reported full in the clear, 2 GiB and still not full over TLS (OpenSSL engine); a 4 GiB
 * migration over mutual TLS held about 300 MiB of ciphertext records in the source's outbound buffer. The
 * channel's own {@code isWritable()} is exact at every write, so this output asks it too. Vert.x then never saw its
 * queue full and calls no drain handler, so the drain comes from a handler at the head of the channel's pipeline
 * that sees every writability change (and from Vert.x's own drain, for a queue Vert.x filled itself).
 */
final class ChannelOutput implements WriteStream<Buffer> {

    private final WriteStream<Buffer> socket;
    private final Channel channel;
    /** The writer's drain handler and its context, called once. */
    private final AtomicReference<Waiting> waiting = new AtomicReference<>();

    private record Waiting(Handler<Void> handler, Context context) {
    }

    ChannelOutput(WriteStream<Buffer> socket, Channel channel) {
        this.socket = socket;
        this.channel = channel;
        socket.drainHandler(v -> drained());
        channel.pipeline().addFirst("vmp-writability", new ChannelInboundHandlerAdapter() {
            @Override
            public void channelWritabilityChanged(ChannelHandlerContext ctx) {
                try {
                    drained();
                } finally {
                    ctx.fireChannelWritabilityChanged();
                }
            }

            /** A writer waiting for room is woken: its next write fails and says why. */
            @Override
            public void channelInactive(ChannelHandlerContext ctx) {
                try {
                    drained();
                } finally {
                    ctx.fireChannelInactive();
                }
            }
        });
    }

    @Override
    public Future<Void> write(Buffer data) {
        return socket.write(data);
    }

    /**
     * Full when Vert.x says so or the open channel is past its high-water mark. A closed channel is never writable
     * in Netty's eyes, and a WebSocket Vert.x has closed throws when asked; neither is full here, so a writer goes on
     * to a write that fails and says why, rather than waiting for a drain that will not come.
     */
    @Override
    public boolean writeQueueFull() {
        if (!channel.isActive()) {
            return false;
        }
        try {
            return socket.writeQueueFull() || !channel.isWritable();
        } catch (IllegalStateException closed) {
            return false;
        }
    }

    @Override
    public WriteStream<Buffer> drainHandler(Handler<Void> handler) {
        waiting.set(handler == null ? null : new Waiting(handler, Vertx.currentContext()));
        // Writable again before the handler was there (a writer on another thread): no event would call it now.
        drained();
        return this;
    }

    /** Calls the waiting drain handler, once, if the queue has room. */
    private void drained() {
        if (writeQueueFull()) {
            return;
        }
        Waiting w = waiting.getAndSet(null);
        if (w == null) {
            return;
        }
        if (w.context() != null) {
            w.context().runOnContext(v -> w.handler().handle(null));
        } else {
            channel.eventLoop().execute(() -> w.handler().handle(null));
        }
    }

    @Override
    public WriteStream<Buffer> exceptionHandler(Handler<Throwable> handler) {
        socket.exceptionHandler(handler);
        return this;
    }

    @Override
    public Future<Void> end() {
        return socket.end();
    }

    @Override
    public WriteStream<Buffer> setWriteQueueMaxSize(int maxSize) {
        socket.setWriteQueueMaxSize(maxSize);
        return this;
    }
}
