package io.vfioproxy.migration;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.stream.CrossContextOutput;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.vertx.VertxInternals;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The source's own connection for one device's section (feature {@code device-connections}): opened after ACCEPT,
 * under the same transport and TLS as the first, on an event loop of its own; JOIN with the destination's token,
 * JOINED back; then the channel's SECTION frames and its SECTION_END go on it, backpressured by it alone.
 *
 * <p>The migration writes and decides on its own context; the socket lives on the link's event loop, which does
 * its work (the copies into the kernel, TLS) and reads what the destination answers: writes are handed over by a
 * {@link CrossContextOutput}, and what arrives is decoded there and handed back to the migration's context.
 */
final class DeviceLink {

    /** Bytes handed to the link's event loop and not yet written: stream.writeQueueMaxSize's default. */
    static final int QUEUE_BYTES = 4 << 20;

    private final Context home;
    private final Context own;
    private final int channel;
    private final Supplier<Phase> phase;
    private final Consumer<Throwable> onFailure;
    private final Promise<DeviceLink> joined = Promise.promise();
    private final StreamConnection connection;
    /** Used on the migration's context. */
    private final FrameWriter writer;
    /** Fed on the link's event loop. */
    private final FrameDecoder decoder;
    /** Migration's context only. */
    private boolean closed;

    private DeviceLink(Context home, Context own, StreamConnection connection, Limits limits, int channel,
            Supplier<Phase> phase, Consumer<Throwable> onFailure) {
        this.home = home;
        this.own = own;
        this.connection = connection;
        this.channel = channel;
        this.phase = phase;
        this.onFailure = onFailure;
        this.writer = new FrameWriter(new CrossContextOutput(home, own, connection.output(), QUEUE_BYTES));
        this.decoder = new FrameDecoder(limits, FrameDecoder.controlOnly(this::onControl));
    }

    /**
     * Opens the connection of {@code channel} from a new event-loop context and joins it to the migration. Called on
     * the migration's context, where the future completes and {@code onFailure} is called.
     *
     * @param onFailure what the link reports once it fails, joined or not (the connection lost, a REFUSE or ABORT,
     *        a protocol error)
     * @return completes once the destination answered JOINED
     */
    static Future<DeviceLink> open(Vertx vertx, Supplier<Future<StreamConnection>> connect, Limits limits,
            String migration, int channel, String token, Supplier<Phase> phase, Consumer<Throwable> onFailure) {
        Context home = vertx.getOrCreateContext();
        Context own = VertxInternals.newEventLoopContext(vertx);
        Promise<StreamConnection> connected = Promise.promise();
        // Connected from its own context: the socket, its TLS and its handlers run on that event loop.
        own.runOnContext(v -> connect.get().onComplete(ar -> home.runOnContext(x -> connected.handle(ar))));
        return connected.future().compose(connection -> {
            DeviceLink link = new DeviceLink(home, own, connection, limits, channel, phase, onFailure);
            return link.join(migration, token);
        });
    }

    /** On the migration's context: the link's handlers go to its own, the JOIN goes out. */
    private Future<DeviceLink> join(String migration, String token) {
        own.runOnContext(v -> {
            connection.input().exceptionHandler(e -> home.runOnContext(x -> failed(e)));
            connection.input().handler(this::receive);
            connection.closeHandler(closed -> home.runOnContext(x -> failed(MigrationException.fromPeer(phase.get(),
                    "the connection of channel " + channel + " to " + connection.peer() + " closed"))));
        });
        writer.control(FrameType.JOIN, channel, new JsonObject().put("protocol", Frames.PROTOCOL_VERSION)
                .put("migration", migration).put("channel", channel).put("token", token));
        return joined.future();
    }

    int channel() {
        return channel;
    }

    /** Where the channel's frames go; used on the migration's context. */
    FrameWriter writer() {
        return writer;
    }

    /** Bytes written and read on the connection. */
    long bytes() {
        return writer.bytesWritten() + decoder.bytes();
    }

    /** On the link's event loop. */
    private void receive(Buffer data) {
        try {
            decoder.feed(data);
        } catch (ProtocolException e) {
            home.runOnContext(x -> failed(e));
        }
    }

    /** On the link's event loop, from the decoder. */
    private void onControl(FrameType type, int frameChannel, JsonObject body) {
        switch (type) {
            case JOINED -> home.runOnContext(x -> joined.tryComplete(this));
            case REFUSE -> home.runOnContext(x -> failed(MigrationException.fromPeer(phase.get(),
                    "the destination refused the connection of channel " + channel + ": "
                            + body.getString("reason", "no reason given"))));
            case ABORT -> home.runOnContext(x -> failed(MigrationException.fromPeer(phase.get(),
                    "the destination aborted the migration: " + body.getString("reason", "no reason given"))));
            default -> throw new ProtocolException("unexpected " + type + " frame from the destination on the "
                    + "connection of channel " + channel);
        }
    }

    private void failed(Throwable cause) {
        if (closed) {
            return;
        }
        joined.tryFail(cause);
        onFailure.accept(cause);
        // Whatever the migration does now, this connection is done.
        close();
    }

    /** Closes the connection; what it reports from now on is ignored. */
    void close() {
        closed = true;
        own.runOnContext(v -> connection.close());
    }

    /** Tells the destination why the migration failed, and closes once it read that. */
    void abort(Vertx vertx, String reason, long lingerMillis) {
        closed = true;
        writer.control(FrameType.ABORT, channel, new JsonObject().put("reason", reason));
        // Behind the ABORT on the link's event loop.
        own.runOnContext(v -> connection.lingerAndClose(vertx, lingerMillis));
    }
}
