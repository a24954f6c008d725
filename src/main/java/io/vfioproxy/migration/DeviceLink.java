package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.StreamConnection;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The source's own connection for one device's section (feature {@code device-connections}): opened after ACCEPT,
 * under the same transport and TLS as the first; JOIN with the destination's token, JOINED back; then the
 * channel's SECTION frames and its SECTION_END go on it, backpressured by it alone. Runs on the migration's context.
 */
final class DeviceLink {

    private final int channel;
    private final Supplier<Phase> phase;
    private final Consumer<Throwable> onFailure;
    private final Promise<DeviceLink> joined = Promise.promise();
    private final StreamConnection connection;
    private final FrameWriter writer;
    private final FrameDecoder decoder;
    private boolean closed;

    private DeviceLink(StreamConnection connection, Limits limits, int channel, Supplier<Phase> phase,
            Consumer<Throwable> onFailure) {
        this.connection = connection;
        this.channel = channel;
        this.phase = phase;
        this.onFailure = onFailure;
        this.writer = new FrameWriter(connection.output());
        this.decoder = new FrameDecoder(limits, FrameDecoder.controlOnly(this::onControl));
    }

    /**
     * Opens the connection of {@code channel} and joins it to the migration.
     *
     * @param onFailure what the link reports once it fails, joined or not (the connection lost, a REFUSE or ABORT,
     *        a protocol error)
     * @return completes once the destination answered JOINED
     */
    static Future<DeviceLink> open(Supplier<Future<StreamConnection>> connect, Limits limits, String migration,
            int channel, String token, Supplier<Phase> phase, Consumer<Throwable> onFailure) {
        return connect.get().compose(connection -> {
            DeviceLink link = new DeviceLink(connection, limits, channel, phase, onFailure);
            return link.join(migration, token);
        });
    }

    private Future<DeviceLink> join(String migration, String token) {
        connection.input().exceptionHandler(this::failed);
        connection.input().handler(this::receive);
        connection.closeHandler(v -> {
            if (!closed) {
                failed(MigrationException.fromPeer(phase.get(), "the connection of channel " + channel + " to "
                        + connection.peer() + " closed"));
            }
        });
        writer.control(FrameType.JOIN, channel, new JsonObject().put("protocol", Frames.PROTOCOL_VERSION).put("migration", migration)
                .put("channel", channel).put("token", token));
        return joined.future();
    }

    int channel() {
        return channel;
    }

    /** Where the channel's frames go. */
    FrameWriter writer() {
        return writer;
    }

    /** Bytes written and read on the connection. */
    long bytes() {
        return writer.bytesWritten() + decoder.bytes();
    }

    private void receive(Buffer data) {
        try {
            decoder.feed(data);
        } catch (ProtocolException e) {
            failed(e);
        }
    }

    private void onControl(FrameType type, int frameChannel, JsonObject body) {
        switch (type) {
            case JOINED -> joined.tryComplete(this);
            case REFUSE -> failed(MigrationException.fromPeer(phase.get(), "the destination refused the connection "
                    + "of channel " + channel + ": " + body.getString("reason", "no reason given")));
            case ABORT -> failed(MigrationException.fromPeer(phase.get(), "the destination aborted the migration: "
                    + body.getString("reason", "no reason given")));
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
        connection.close();
    }

    /** Tells the destination why the migration failed, and closes once it read that. */
    void abort(Vertx vertx, String reason, long lingerMillis) {
        closed = true;
        writer.control(FrameType.ABORT, channel, new JsonObject().put("reason", reason));
        connection.lingerAndClose(vertx, lingerMillis);
    }
}
