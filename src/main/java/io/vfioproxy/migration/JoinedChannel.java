package io.vfioproxy.migration;

import io.vertx.core.Context;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.migration.MigrationStatus.DeviceBytes;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.StreamConnection;
import java.util.function.Function;

/**
 * The destination's end of a device's own connection (feature {@code device-connections}). Its first frame, JOIN,
 * names the migration, the channel and the token of the migration's ACCEPT; the migration's {@link
 * DestinationSession} checks them and attaches the channel's device. From then on the channel's section is decoded
 * and loaded here, on this connection's event loop, by a {@link SectionLoader} of its own: a slow device pauses this
 * connection only, and its siblings' sections go on. What the loader finds goes to the session, on the session's
 * context; the session ends the channel with the migration.
 *
 * <p>Runs on the context the connection was accepted on; {@link #attach}, {@link #refuse}, {@link #abort} and
 * {@link #finish} may be called from any context.
 */
final class JoinedChannel {

    private final Vertx vertx;
    private final String agent;
    private final StreamConnection connection;
    private final MigrationOptions options;
    private final Function<String, DestinationSession> sessions;
    private final FrameWriter writer;
    private final FrameDecoder decoder;
    private Context context;
    private DecodingSink sink;
    private DestinationSession session;
    private int channel = -1;
    /** The device the session attached; null before. */
    private volatile DeviceHandle device;
    /** Volatile: set here once its channel is open, read for status from the session's context. */
    private volatile SectionLoader loader;
    /** The channel's device loaded its state: the connection's end is no failure any more. */
    private boolean loaded;
    private boolean ended;
    private long handshakeTimer = -1;

    /** @param sessions the destination session of a migration id, or null */
    JoinedChannel(Vertx vertx, String agent, StreamConnection connection, MigrationOptions options,
            Function<String, DestinationSession> sessions) {
        this.vertx = vertx;
        this.agent = agent;
        this.connection = connection;
        this.options = options;
        this.sessions = sessions;
        this.writer = new FrameWriter(connection.output());
        this.decoder = new FrameDecoder(options.limits(), SectionLoader.listener(this::sections, this::onControl));
    }

    /** Starts reading the connection, whose first frame must be JOIN. */
    void start() {
        context = vertx.getOrCreateContext();
        handshakeTimer = vertx.setTimer(options.handshakeTimeoutMillis(), id -> {
            if (session == null && !ended) {
                end();
                connection.close();
            }
        });
        connection.closeHandler(v -> closed("the connection closed " + decoder.position()));
        connection.shutdownHandler(v -> {
            // The session ends the migration, and this channel with it; a connection without one just closes.
            if (session == null) {
                end();
                connection.close();
            }
        });
        sink = new DecodingSink(decoder, () -> loader, this::protocolError);
        connection.input().pipe().endOnSuccess(false).endOnFailure(false).to(sink).onComplete(ar -> closed(
                ar.failed() ? "reading failed: " + ar.cause().getMessage()
                        : "the connection closed " + decoder.position()));
    }

    /** The device the channel loads, once attached. */
    DeviceHandle device() {
        return device;
    }

    /** Bytes read from the connection so far. Any thread. */
    long bytes() {
        return decoder.bytes();
    }

    /** The channel's data bytes, sent while its device ran and after (SectionLoader#deviceBytes). Any thread. */
    DeviceBytes deviceBytes(boolean precopy) {
        SectionLoader l = loader;
        return l == null ? new DeviceBytes(0, 0) : l.deviceBytes(device, precopy);
    }

    /** Pre-copy iterations the source ended on the channel. Any thread. */
    long iterations() {
        SectionLoader l = loader;
        return l == null ? 0 : l.iterations();
    }

    /** Bytes the channel's device has taken. Any thread. */
    long written() {
        SectionLoader l = loader;
        return l == null ? 0 : l.written();
    }

    private void onControl(FrameType type, int frameChannel, JsonObject body) {
        switch (type) {
            case JOIN -> join(body);
            case SECTION_END -> sections().sectionEnd(frameChannel, body);
            case ABORT -> {
                String reason = body.getString("reason", "no reason given");
                if (session != null) {
                    session.sourceAborted(reason);
                }
                end();
                connection.close();
            }
            default -> throw new ProtocolException("unexpected " + type + " frame on a device connection");
        }
    }

    private void join(JsonObject body) {
        if (session != null || channel >= 0) {
            throw new ProtocolException("a second JOIN");
        }
        vertx.cancelTimer(handshakeTimer);
        String id = body.getValue("migration") instanceof String s ? s : null;
        int ch = body.getValue("channel") instanceof Integer n ? n : -1;
        String token = body.getValue("token") instanceof String s ? s : "";
        DestinationSession found = id == null ? null : sessions.apply(id);
        if (found == null || ch < 0) {
            refuse("agent " + agent + " has no migration " + id + " awaiting a device connection for channel " + ch);
            return;
        }
        channel = ch;
        session = found;
        found.join(this, ch, token);
    }

    /** The loader, once the session attached the device. */
    private SectionLoader sections() {
        if (loader == null) {
            throw new ProtocolException("SECTION frame on a device connection before JOINED");
        }
        return loader;
    }

    /**
     * The session accepted the JOIN: the channel's section loads into {@code device}, and the loader's events go to
     * {@code events} (which hand them to the session's context).
     */
    void attach(DeviceHandle target, boolean switchoverAck, String cause, SectionLoader.Events events) {
        device = target;
        context.runOnContext(v -> {
            if (ended) {
                return;
            }
            SectionLoader load = new SectionLoader(cause, switchoverAck, options.deviceWriteQueueBytes(),
                    new SectionLoader.Events() {
                        @Override
                        public void loaded(int id, DeviceHandle d, long dataBytes) {
                            loaded = true;
                            events.loaded(id, d, dataBytes);
                        }

                        @Override
                        public void failed(Throwable failure) {
                            events.failed(failure);
                        }

                        @Override
                        public void initialDataLoaded(int id) {
                            events.initialDataLoaded(id);
                        }
                    });
            load.retainInput(connection::retainInput);
            load.open(channel, target);
            loader = load;
            writer.control(FrameType.JOINED, channel, new JsonObject().put("channel", channel));
        });
    }

    /** Refuses the JOIN with {@code reason}, then closes once the source read it. */
    void refuse(String reason) {
        context.runOnContext(v -> {
            if (ended) {
                return;
            }
            writer.control(FrameType.REFUSE, Math.max(0, channel), new JsonObject().put("reason", reason));
            session = null;
            end();
            connection.lingerAndClose(vertx, DestinationSession.ABORT_LINGER_MILLIS);
        });
    }

    /** The migration failed: what waits for the device is dropped, and the connection closes once drained. */
    void abort() {
        context.runOnContext(v -> {
            if (loader != null) {
                loader.abort();
            }
            if (!ended) {
                end();
                connection.lingerAndClose(vertx, DestinationSession.ABORT_LINGER_MILLIS);
            }
        });
    }

    /** The migration completed: the connection closes once the source closed its end (or after a while). */
    void finish() {
        context.runOnContext(v -> {
            if (!ended) {
                end();
                connection.lingerAndClose(vertx, DestinationSession.ABORT_LINGER_MILLIS);
            }
        });
    }

    private void end() {
        ended = true;
        vertx.cancelTimer(handshakeTimer);
        if (sink != null) {
            sink.stop();
        }
    }

    private void closed(String how) {
        if (ended) {
            return;
        }
        end();
        if (session != null && !loaded) {
            session.channelLost(channel, how);
        }
    }

    private void protocolError(RuntimeException e) {
        if (ended) {
            return;
        }
        if (session != null) {
            // The session fails the migration, tells the source on its first connection, and aborts this channel.
            session.channelFailed(channel, e.getMessage());
            return;
        }
        end();
        writer.control(FrameType.REFUSE, 0, new JsonObject().put("reason", e.getMessage()));
        connection.lingerAndClose(vertx, DestinationSession.ABORT_LINGER_MILLIS);
    }
}
