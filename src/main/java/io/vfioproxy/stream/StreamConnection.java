package io.vfioproxy.stream;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.streams.ReadStream;
import io.vertx.core.streams.WriteStream;

/**
 * One agent-to-agent connection, whatever carries it (TCP today, WebSocket next): a byte stream each way with
 * Vert.x backpressure, and a close signal. The migration engines see only this.
 */
public interface StreamConnection {

    ReadStream<Buffer> input();

    WriteStream<Buffer> output();

    /** Called once when the connection is closed, by either side. */
    void closeHandler(Handler<Void> handler);

    /** Called when this agent shuts down: the connection will be closed shortly, whatever it carries. */
    void shutdownHandler(Handler<Void> handler);

    Future<Void> close();

    /** The peer's address, for messages. */
    String peer();

    /**
     * Closes once the peer has read what was written: reads and drops input until the peer closes, or for
     * {@code lingerMillis}. Closing at once with unread input resets the connection (RST), and the peer may lose
     * the last frames it had not read yet, such as the reason of an ABORT.
     */
    default void lingerAndClose(Vertx vertx, long lingerMillis) {
        input().handler(ignored -> { });
        input().resume();
        long timer = vertx.setTimer(lingerMillis, id -> close());
        closeHandler(v -> vertx.cancelTimer(timer));
    }

    /**
     * Keeps the input buffer being handled alive until the returned action runs: a consumer that holds on to a
     * slice of it past the handler (data queued for a device) calls this. A no-op where the input is copied.
     */
    default Runnable retainInput() {
        return () -> { };
    }
}
