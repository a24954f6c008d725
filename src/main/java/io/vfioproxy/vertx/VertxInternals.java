package io.vfioproxy.vertx;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.vertx.core.Context;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.buffer.impl.BufferImpl;
import io.vertx.core.internal.VertxInternal;
import io.vertx.core.internal.buffer.BufferInternal;
import io.vertx.core.internal.net.NetSocketInternal;
import io.vertx.core.net.NetSocket;
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

    /** A new event-loop context; Vert.x assigns its event loop round-robin. */
    public static Context newEventLoopContext(Vertx vertx) {
        return ((VertxInternal) vertx).createEventLoopContext();
    }

    /**
     * The socket's input as its pooled read buffers, each read up to {@code receiveBufferMax} bytes. Call before any
     * handler is set on the socket; the input then owns the socket's message and close handling.
     */
    public static DirectInput directInput(NetSocket socket, int receiveBufferMax) {
        return new DirectInput((NetSocketInternal) socket, receiveBufferMax);
    }
}
