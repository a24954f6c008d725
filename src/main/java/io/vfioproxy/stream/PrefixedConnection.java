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
    private final PrefixedReadStream input;

    /** @param prefix what was read from {@code connection}, a copy; {@code connection}'s input is paused */
    public PrefixedConnection(StreamConnection connection, Buffer prefix, Context context) {
        this.connection = connection;
        this.input = new PrefixedReadStream(prefix, connection.input(), context);
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
}
