package io.vfioproxy.stream;

import io.vertx.core.Context;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.streams.ReadStream;

/**
 * A stream whose first bytes were already read (to see what they are) and are read again: it gives those bytes
 * first, then the rest of the stream, with the same flow control. Runs on the stream's context.
 */
public final class PrefixedReadStream implements ReadStream<Buffer> {

    private final ReadStream<Buffer> rest;
    private final Context context;
    private Buffer prefix;
    private Handler<Buffer> handler;
    private Handler<Void> endHandler;
    private boolean restEnded;
    private long demand;

    /**
     * @param prefix bytes already read from {@code rest}, a copy or a buffer the caller keeps; {@code rest} is
     *        paused
     */
    public PrefixedReadStream(Buffer prefix, ReadStream<Buffer> rest, Context context) {
        this.prefix = prefix.length() == 0 ? null : prefix;
        this.rest = rest;
        this.context = context;
        rest.endHandler(v -> {
            restEnded = true;
            if (this.prefix == null && endHandler != null) {
                endHandler.handle(null);
            }
        });
    }

    @Override
    public ReadStream<Buffer> exceptionHandler(Handler<Throwable> h) {
        rest.exceptionHandler(h);
        return this;
    }

    @Override
    public ReadStream<Buffer> handler(Handler<Buffer> h) {
        this.handler = h;
        rest.handler(h);
        if (h != null) {
            deliverLater();
        }
        return this;
    }

    @Override
    public ReadStream<Buffer> pause() {
        demand = 0;
        rest.pause();
        return this;
    }

    @Override
    public ReadStream<Buffer> resume() {
        return fetch(Long.MAX_VALUE);
    }

    @Override
    public ReadStream<Buffer> fetch(long amount) {
        demand = demand + amount < 0 ? Long.MAX_VALUE : demand + amount;
        if (prefix != null) {
            deliverLater();
        } else {
            rest.fetch(amount);
        }
        return this;
    }

    private void deliverLater() {
        context.runOnContext(v -> deliverPrefix());
    }

    private void deliverPrefix() {
        if (prefix == null || handler == null || demand == 0) {
            return;
        }
        Buffer p = prefix;
        prefix = null;
        if (demand != Long.MAX_VALUE) {
            demand--;
        }
        handler.handle(p);
        if (demand == Long.MAX_VALUE) {
            rest.resume();
        } else if (demand > 0) {
            rest.fetch(demand);
        }
        if (restEnded && endHandler != null) {
            endHandler.handle(null);
        }
    }

    @Override
    public ReadStream<Buffer> endHandler(Handler<Void> h) {
        this.endHandler = h;
        return this;
    }
}
