package io.vfioproxy.stream;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.UnpooledByteBufAllocator;
import io.netty.buffer.UnpooledDirectByteBuf;
import io.netty.util.internal.PlatformDependent;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Direct buffers of one size for one device stream's data chunks, reused: each is allocated once and comes back
 * when the connection has written it (its last release), to be read into again.
 *
 * <p>Netty's allocators do not fit a stream of MiB chunks: the default (adaptive) one pools buffers only up to a
 * few hundred KiB and gives every larger one a fresh DirectByteBuffer, which the JDK zeroes (a tenth of the source's
 * CPU went there), and the pooled one frees a chunk as soon as its last buffer comes back, which a stream of large
 * buffers does all the time. Here the memory is what the stream holds in flight, at most {@code maxIdle} buffers more
 * while it idles, and none once it is closed.
 *
 * <p>{@link #take()} runs on the device's thread, the release on the connection's event loop: both are thread-safe.
 */
public final class ChunkPool implements AutoCloseable {

    private final int capacity;
    private final int maxIdle;
    /** Last in, first out: the buffer written last is the likeliest to be still in a cache. */
    private final ConcurrentLinkedDeque<ByteBuffer> idle = new ConcurrentLinkedDeque<>();
    private final AtomicInteger idleCount = new AtomicInteger();
    private final AtomicInteger allocated = new AtomicInteger();
    private volatile boolean closed;

    /**
     * @param capacity every buffer's size in bytes
     * @param maxIdle how many returned buffers are kept for reuse; any more are freed
     */
    public ChunkPool(int capacity, int maxIdle) {
        this.capacity = capacity;
        this.maxIdle = maxIdle;
    }

    /** A buffer of {@link #capacity()} bytes, reader and writer index 0, its contents undefined. */
    public ByteBuf take() {
        ByteBuffer memory = idle.pollFirst();
        if (memory == null) {
            memory = ByteBuffer.allocateDirect(capacity);
            allocated.incrementAndGet();
        } else {
            idleCount.decrementAndGet();
        }
        return new Chunk(memory);
    }

    public int capacity() {
        return capacity;
    }

    /** Buffers this pool holds, idle or taken; for tests and the bench. */
    public int allocated() {
        return allocated.get();
    }

    private void giveBack(ByteBuffer memory) {
        if (!closed && idleCount.incrementAndGet() <= maxIdle) {
            idle.addFirst(memory);
            if (closed) {
                // Closed meanwhile: the close may have drained the queue before this buffer was in it.
                freeIdle();
            }
            return;
        }
        if (!closed) {
            idleCount.decrementAndGet();
        }
        free(memory);
    }

    private void free(ByteBuffer memory) {
        allocated.decrementAndGet();
        PlatformDependent.freeDirectBuffer(memory);
    }

    private void freeIdle() {
        for (ByteBuffer memory; (memory = idle.pollFirst()) != null; ) {
            free(memory);
        }
    }

    /** Frees the idle buffers; buffers still taken are freed as they come back. */
    @Override
    public void close() {
        closed = true;
        freeIdle();
    }

    /** A pooled buffer: its last release gives its memory back instead of freeing it. */
    private final class Chunk extends UnpooledDirectByteBuf {
        private final ByteBuffer memory;

        Chunk(ByteBuffer memory) {
            super(UnpooledByteBufAllocator.DEFAULT, memory.clear(), memory.capacity());
            this.memory = memory;
            setIndex(0, 0);
        }

        @Override
        protected void deallocate() {
            giveBack(memory);
        }
    }
}
