package io.vfioproxy.vertx;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslHandler;
import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.buffer.impl.BufferImpl;
import io.vertx.core.http.WebSocketBase;
import io.vertx.core.internal.VertxInternal;
import io.vertx.core.internal.buffer.BufferInternal;
import io.vertx.core.internal.http.WebSocketInternal;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.net.NetSocket;
import io.vertx.core.streams.WriteStream;
import java.nio.ByteBuffer;

/**
 * The one place the agent reaches into Vert.x's internal API ({@code io.vertx.core.internal}), which may change in
 * any release. Each use says what public API lacks; {@code VertxInternalsContractTest} fails when an upgrade changes
 * the behaviour relied on here.
 *
 * <ul>
 *   <li>Buffers without copies: Netty left the public API, and {@code Buffer.buffer(...)} copies.</li>
 *   <li>A new event-loop context: {@code vertx.getOrCreateContext()} returns the caller's; a migration needs one of
 *       its own, so concurrent migrations spread over the event loops.</li>
 *   <li>TCP input as Netty's pooled buffers ({@link DirectInput}): {@code NetSocket.handler} copies every read into
 *       the heap.</li>
 *   <li>WebSocket input as Netty's decoded frames ({@link #directInput(WebSocketBase)}): {@code WebSocket.handler}
 *       copies every frame into the heap.</li>
 *   <li>Output backpressure from the channel's writability ({@link #output(NetSocket)}): under TLS Vert.x's
 *       {@code writeQueueFull()} lags the channel by hundreds of MiB.</li>
 *   <li>TLS on an accepted socket at once ({@link #startServerTls}): a server with TLS in its options hands on
 *       neither the connection before its handshake (for limits) nor the peer of a failed one (for the log), and
 *       5.0.7's {@code upgradeToSsl} installs its handler only after building the TLS context on a worker, so a
 *       ClientHello that arrives first is taken for plaintext and the handshake hangs.</li>
 * </ul>
 */
public final class VertxInternals {

    private VertxInternals() {
    }

    /** A Vert.x buffer over {@code buf}, sharing its memory (and its reference count). */
    public static Buffer wrap(ByteBuf buf) {
        return BufferInternal.buffer(buf);
    }

    /** The Netty buffer under a Vert.x buffer: no copy. */
    public static ByteBuf unwrap(Buffer buf) {
        return ((BufferInternal) buf).getByteBuf();
    }

    /**
     * A slice of the memory under {@code buf} that keeps it alive until released, whoever releases theirs: for
     * holding input past its handler, or writing it on without a copy. {@link #unwrap} cannot do this: Vert.x hands
     * out its buffers' memory as unreleasable views, whose retain does nothing.
     */
    public static ByteBuf retainedSlice(Buffer buf) {
        if (buf instanceof BufferImpl impl) {
            return impl.byteBuf().retainedSlice();
        }
        return Unpooled.copiedBuffer(unwrap(buf));
    }

    /** A NIO view of {@code length} bytes of {@code buf} from {@code from}, without copying. */
    public static ByteBuffer nio(Buffer buf, int from, int length) {
        return unwrap(buf).nioBuffer(from, length);
    }

    /**
     * Starts server-side TLS on {@code socket}, just accepted and not yet read: Netty's handler goes first in its
     * pipeline, so every byte from the first passes through it. Completes when the handshake did (on the socket's
     * event loop), fails with the handshake's cause, or after {@code handshakeTimeoutMillis}.
     */
    public static Future<Void> startServerTls(NetSocket socket, SslContext context, long handshakeTimeoutMillis) {
        Channel channel = ((NetSocketInternal) socket).channelHandlerContext().channel();
        SslHandler tls = context.newHandler(channel.alloc());
        tls.setHandshakeTimeoutMillis(handshakeTimeoutMillis);
        Promise<Void> done = Promise.promise();
        tls.handshakeFuture().addListener(f -> {
            if (f.isSuccess()) {
                done.tryComplete();
            } else {
                done.tryFail(f.cause());
            }
        });
        channel.pipeline().addFirst("ssl", tls);
        return done.future();
    }

    /** A new event-loop context; Vert.x assigns its event loop round-robin. */
    public static Context newEventLoopContext(Vertx vertx) {
        return ((VertxInternal) vertx).createEventLoopContext();
    }

    /**
     * The socket's input as its pooled read buffers, each read up to {@code receiveBufferMax} bytes. Call before any
     * handler is set on the socket; the input then owns the socket's message and close handling.
     */
    public static DirectInput directInput(NetSocket socket, int receiveBufferMax) {
        return DirectInput.of((NetSocketInternal) socket, receiveBufferMax);
    }

    /**
     * The socket's output, its queue full while the channel is not writable ({@link ChannelOutput}: Vert.x's own
     * answer lags under TLS).
     */
    public static WriteStream<Buffer> output(NetSocket socket) {
        return new ChannelOutput(socket, ((NetSocketInternal) socket).channelHandlerContext().channel());
    }

    /** The same for a WebSocket; one that is not Vert.x's own (a router's wrapper) is its own output. */
    public static WriteStream<Buffer> output(WebSocketBase socket) {
        return socket instanceof WebSocketInternal internal
                ? new ChannelOutput(socket, internal.channelHandlerContext().channel()) : socket;
    }

    /**
     * The WebSocket's binary frames as Netty decoded them, without Vert.x's copy of each into the heap; the input
     * then owns the WebSocket's data and close handling. Call as the WebSocket is accepted or connected, on its
     * channel's event loop (where a server's request handler and a client on an event-loop context complete);
     * elsewhere, or for a WebSocket that is not Vert.x's own (Vert.x Web's router hands out a wrapper), this
     * returns {@code null} and the caller reads the WebSocket as it is.
     */
    public static DirectInput directInput(WebSocketBase socket) {
        return socket instanceof WebSocketInternal internal ? DirectInput.of(internal) : null;
    }
}
