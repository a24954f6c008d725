package io.vfioproxy.stream;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.Promise;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.streams.WriteStream;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A connection's output written from one context while the connection lives on another, its own event loop: each
 * write is handed to the connection's context, in order, and the socket's work (the copy into the kernel, TLS)
 * runs there. The bytes handed over and not yet written make the queue full, so a pipe on the writer's context
 * pauses exactly as it would on the connection itself, and memory stays bounded. Write completions and the drain
 * handler run on the writer's context.
 */
public final class CrossContextOutput implements WriteStream<Buffer> {

    private final Context writer;
    private final Context owner;
    private final WriteStream<Buffer> out;
    /** Handed to the owner and not yet written; changed on both contexts. */
    private final AtomicLong pending = new AtomicLong();
    private volatile long maxPending;
    /** Writer's context only. */
    private Handler<Void> drainHandler;

    /**
     * @param writer where {@link #write} is called, and where its futures and the drain handler complete
     * @param owner the context of the connection {@code out} belongs to
     * @param maxPending bytes in flight before the queue is full
     */
    public CrossContextOutput(Context writer, Context owner, WriteStream<Buffer> out, long maxPending) {
        this.writer = writer;
        this.owner = owner;
        this.out = out;
        this.maxPending = maxPending;
    }

    @Override
    public Future<Void> write(Buffer data) {
        long n = data.length();
        pending.addAndGet(n);
        Promise<Void> written = Promise.promise();
        owner.runOnContext(v -> out.write(data).onComplete(ar -> {
            pending.addAndGet(-n);
            writer.runOnContext(x -> {
                written.handle(ar);
                drainIfBelowHalf();
            });
        }));
        return written.future();
    }

    private void drainIfBelowHalf() {
        if (drainHandler != null && pending.get() < maxPending / 2) {
            Handler<Void> h = drainHandler;
            drainHandler = null;
            h.handle(null);
        }
    }

    @Override
    public boolean writeQueueFull() {
        return pending.get() >= maxPending;
    }

    @Override
    public WriteStream<Buffer> drainHandler(Handler<Void> handler) {
        drainHandler = handler;
        return this;
    }

    @Override
    public WriteStream<Buffer> setWriteQueueMaxSize(int maxSize) {
        maxPending = maxSize;
        return this;
    }

    @Override
    public WriteStream<Buffer> exceptionHandler(Handler<Throwable> handler) {
        // The connection's failures reach its owner, who reports them (its close handler, its input's).
        return this;
    }

    @Override
    public Future<Void> end() {
        Promise<Void> ended = Promise.promise();
        owner.runOnContext(v -> out.end().onComplete(ar -> writer.runOnContext(x -> ended.handle(ar))));
        return ended.future();
    }
}
