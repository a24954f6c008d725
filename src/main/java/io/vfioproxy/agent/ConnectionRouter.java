package io.vfioproxy.agent;

import io.vertx.core.Context;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.streams.ReadStream;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.PrefixedConnection;
import io.vfioproxy.stream.StreamConnection;

/**
 * Hands each agent connection to what its first frame opens: a relay channel (RELAY_OPEN) to the relays, a device
 * connection of a migration (JOIN) to the migrations' joins, anything else (HELLO, or bytes that are not the
 * protocol at all, which the migration engine refuses with the reason) to the migrations. It reads the frame
 * header's first three bytes (magic and type) and gives them back.
 */
final class ConnectionRouter {

    /** Bytes of the frame header up to and including its type. */
    private static final int TYPE_END = 3;

    private final Vertx vertx;
    private final Handler<StreamConnection> migrations;
    private final Handler<StreamConnection> joins;
    private final Handler<StreamConnection> relays;
    private final long handshakeTimeoutMillis;

    ConnectionRouter(Vertx vertx, Handler<StreamConnection> migrations, Handler<StreamConnection> joins,
            Handler<StreamConnection> relays, long handshakeTimeoutMillis) {
        this.vertx = vertx;
        this.migrations = migrations;
        this.joins = joins;
        this.relays = relays;
        this.handshakeTimeoutMillis = handshakeTimeoutMillis;
    }

    void accept(StreamConnection connection) {
        Context context = vertx.getOrCreateContext();
        ReadStream<Buffer> input = connection.input();
        Buffer first = Buffer.buffer(16);
        boolean[] routed = {false};
        long timer = vertx.setTimer(handshakeTimeoutMillis, id -> {
            if (!routed[0]) {
                routed[0] = true;
                connection.close();
            }
        });
        input.handler(bytes -> {
            if (routed[0]) {
                return;
            }
            first.appendBuffer(bytes);
            if (first.length() < TYPE_END) {
                return;
            }
            routed[0] = true;
            vertx.cancelTimer(timer);
            input.pause();
            input.handler(null);
            StreamConnection replayed = new PrefixedConnection(connection, first, context);
            int type = first.getByte(2) & 0xff;
            if (type == FrameType.RELAY_OPEN.code()) {
                relays.handle(replayed);
            } else if (type == FrameType.JOIN.code()) {
                joins.handle(replayed);
            } else {
                migrations.handle(replayed);
            }
        });
    }
}
