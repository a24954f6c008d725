package io.vfioproxy.stream;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.streams.ReadStream;
import io.vertx.core.streams.WriteStream;

/**
 * A connection whose first bytes were already read (to see what the peer opens it for) and are read again: its
 * input gives those bytes first, then the rest of the connection, with the same flow control.
 */
public final class PrefixedConnection implements StreamConnection {

    private final StreamConnection connection;
    private final Input input;

    /** @param prefix what was read from {@code connection}, a copy; {@code connection}'s input is paused */
    public PrefixedConnection(StreamConnection connection, Buffer prefix, Context context) {
        this.connection = connection;
        this.input = new Input(prefix, connection.input(), context);
    }

    @Override
    public ReadStream<Buffer> input() {
        return input;
    }

    @Override
    public WriteStream<Buffer> output() {
        return connection.output();
    }

    @Override
    public void closeHandler(Handler<Void> handler) {
        connection.closeHandler(handler);
    }

    @Override
    public void shutdownHandler(Handler<Void> handler) {
        connection.shutdownHandler(handler);
    }

    @Override
    public Future<Void> close() {
        return connection.close();
    }

    @Override
    public String peer() {
        return connection.peer();
    }

    @Override
    public Runnable retainInput() {
        // The prefix is a copy: only the connection's own buffers need retaining.
        return connection.retainInput();
    }

    @Override
    public void lingerAndClose(Vertx vertx, long lingerMillis) {
        connection.lingerAndClose(vertx, lingerMillis);
    }

    /** The prefix, then the connection's input; runs on the connection's context. */
    private static final class Input implements ReadStream<Buffer> {
        private final ReadStream<Buffer> rest;
        private final Context context;
        private Buffer prefix;
        private Handler<Buffer> handler;
        private Handler<Void> endHandler;
        private boolean restEnded;
        private long demand;

        Input(Buffer prefix, ReadStream<Buffer> rest, Context context) {
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
}
