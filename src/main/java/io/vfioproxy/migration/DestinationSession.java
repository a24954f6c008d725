package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.core.streams.WriteStream;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.transport.StreamConnection;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * The destination side of one connection: checks the HELLO, moves each named device to RESUMING, writes every
 * data record to its device in order as it arrives, checks each record's CRC32C and the section's grammar, and
 * at the section's end moves the device RESUMING -&gt; STOP, where the device validates its state. LOADED tells
 * the source; START runs the devices.
 *
 * <p>Backpressure: the connection is piped into this session; while more than {@code deviceWriteQueueBytes} are
 * waiting for the device, the pipe pauses the socket, TCP's window closes and the source stops reading its device.
 *
 * <p>Any failure before LOADED resets every device of the session (the only way out of RESUMING) and tells the
 * source why. A connection lost after LOADED leaves the devices in STOP with the migrated state: the source may
 * have committed, so that state is kept, but it is not run.
 */
public final class DestinationSession {

    private enum Phase { HANDSHAKE, RESUMING, LOADED, STARTING, COMPLETED, FAILED }

    /** After ABORT, how long the connection stays open, read and discarded, so the source can read the reason. */
    private static final long ABORT_LINGER_MILLIS = 2000;

    /** Where a channel is in its device section: DEV_SETUP_STATE END_OF_STATE (data... END_OF_STATE)* config. */
    private enum Section { SETUP, SETUP_END, DATA, CONFIG_END, DONE }

    private final Vertx vertx;
    private final String agent;
    private final StreamConnection connection;
    private final DeviceRegistry devices;
    private final MigrationOptions options;
    private final MigrationEvents events;
    private final Function<String, MigrationRecord> register;
    private final Map<Integer, Channel> channels = new LinkedHashMap<>();
    private final List<DeviceHandle> claimed = new ArrayList<>();
    private final FrameWriter writer;
    private final FrameDecoder decoder;
    private MigrationRecord record;
    private Phase phase = Phase.HANDSHAKE;
    private long queuedForDevice;
    private long writtenToDevice;
    private Handler<Void> drainHandler;
    private long timer = -1;
    private long lastProgressMark = -1;
    private long lastProgressNanos;
    private boolean done;

    /**
     * @param register creates and lists the record of a migration the HELLO names
     */
    public DestinationSession(Vertx vertx, String agent, StreamConnection connection, DeviceRegistry devices,
            MigrationOptions options, MigrationEvents events, Function<String, MigrationRecord> register) {
        this.vertx = vertx;
        this.agent = agent;
        this.connection = connection;
        this.devices = devices;
        this.options = options;
        this.events = events;
        this.register = register;
        this.writer = new FrameWriter(connection.output());
        this.decoder = new FrameDecoder(options.limits(), new Incoming());
    }

    /** Starts serving the connection. */
    public void start() {
        lastProgressNanos = System.nanoTime();
        timer = vertx.setPeriodic(Math.max(10, Math.min(250, options.progressTimeoutMillis() / 4)),
                id -> checkProgress());
        connection.closeHandler(v -> connectionEnded());
        connection.input().pipe().endOnSuccess(false).endOnFailure(false).to(new Inbound()).onComplete(ar -> {
            if (ar.failed()) {
                fail(new MigrationException(phase.name(), "reading from " + connection.peer() + " failed: "
                        + ar.cause().getMessage(), ar.cause()));
            } else {
                connectionEnded();
            }
        });
    }

    private void connectionEnded() {
        if (done) {
            return;
        }
        String where = decoder.midFrame() ? "truncated stream: the connection closed " + decoder.position()
                : "the connection closed " + decoder.position();
        fail(MigrationException.fromPeer(phase.name(), where + " in phase " + phase));
    }

    /** The pipe's end of the connection: decodes what arrives, full while the devices lag behind. */
    private final class Inbound implements WriteStream<Buffer> {
        @Override
        public WriteStream<Buffer> exceptionHandler(Handler<Throwable> handler) {
            return this;
        }

        @Override
        public Future<Void> write(Buffer data) {
            if (!done) {
                try {
                    decoder.feed(data);
                } catch (ProtocolException e) {
                    fail(new MigrationException(phase.name(), "protocol error from " + connection.peer() + ": "
                            + e.getMessage(), e));
                }
            }
            return Future.succeededFuture();
        }

        @Override
        public Future<Void> end() {
            return Future.succeededFuture();
        }

        @Override
        public WriteStream<Buffer> setWriteQueueMaxSize(int maxSize) {
            return this;
        }

        @Override
        public boolean writeQueueFull() {
            return !done && queuedForDevice >= options.deviceWriteQueueBytes();
        }

        @Override
        public WriteStream<Buffer> drainHandler(Handler<Void> handler) {
            drainHandler = handler;
            return this;
        }
    }

    /** One device of the migration, on one channel of the connection. */
    private static final class Channel {
        final int id;
        final DeviceHandle device;
        final String sourceDevice;
        Section section = Section.SETUP;
        long dataBytes;
        long dataChunks;
        JsonObject config;
        /** Set on the device thread when a write failed: the device must not leave RESUMING as if loaded. */
        volatile VfioException writeError;
        /** Set when the session failed: writes still queued for the device are skipped. */
        volatile boolean aborted;

        Channel(int id, DeviceHandle device, String sourceDevice) {
            this.id = id;
            this.device = device;
            this.sourceDevice = sourceDevice;
        }
    }

    private void hello(JsonObject hello) {
        int protocol = hello.getInteger("protocol", -1);
        if (protocol != Frames.PROTOCOL_VERSION) {
            refuse("unsupported protocol version " + protocol + "; this agent speaks " + Frames.PROTOCOL_VERSION);
            return;
        }
        String id = hello.getString("migration");
        if (id == null || id.isBlank() || id.length() > 128) {
            refuse("the HELLO names no valid migration id");
            return;
        }
        record = register.apply(id);
        int chunk = hello.getInteger("chunkSize", 0);
        if (chunk <= 0 || chunk > options.limits().maxChunk()) {
            refuse("chunk size " + chunk + " is outside 1.." + options.limits().maxChunk());
            return;
        }
        JsonArray list = hello.getJsonArray("devices");
        if (list == null || list.isEmpty()) {
            refuse("the HELLO names no device");
            return;
        }
        for (int i = 0; i < list.size(); i++) {
            JsonObject d = list.getJsonObject(i);
            int ch = d.getInteger("channel", -1);
            String target = d.getString("targetDevice");
            if (ch < 0 || ch > 255 || channels.containsKey(ch)) {
                refuse("device entry " + i + " has a missing, out-of-range or repeated channel");
                return;
            }
            DeviceHandle local = target == null ? null : devices.find(target);
            if (local == null) {
                refuse("agent " + agent + " has no device named '" + target + "'");
                return;
            }
            if (!local.claim(id)) {
                refuse("device " + target + " is busy with migration " + local.owner());
                return;
            }
            claimed.add(local);
            DeviceIdentity remote = DeviceIdentity.fromJson(d.getJsonObject("identity", new JsonObject()));
            if (!local.identity().acceptsStateOf(remote)) {
                refuse("device " + target + " cannot load the state of " + d.getString("sourceDevice") + ": source is "
                        + remote.model() + " (" + remote.driver() + "), destination is " + local.identity().model()
                        + " (" + local.identity().driver() + ")");
                return;
            }
            channels.put(ch, new Channel(ch, local, d.getString("sourceDevice")));
        }
        record.devices(String.join(",", channels.values().stream().map(c -> c.device.name()).toList()),
                String.join(",", channels.values().stream().map(c -> c.sourceDevice).toList()), connection.peer());
        record.stateSize(channels.values().stream().mapToLong(c -> c.device.identity().stateSize()).sum());
        events.publish(record, "started", new JsonObject());
        List<Future<Void>> resuming = new ArrayList<>();
        for (Channel c : channels.values()) {
            resuming.add(c.device.submit(dc -> {
                dc.setState(DeviceState.RESUMING, dc.state(), cause("resuming"));
                return null;
            }));
        }
        Future.all(resuming).onComplete(ar -> {
            if (done) {
                return;
            }
            if (ar.failed()) {
                // A device that did reach RESUMING must be reset; refusing does that through fail().
                phase = Phase.RESUMING;
                refuse("a device could not enter RESUMING: " + ar.cause().getMessage());
                return;
            }
            phase = Phase.RESUMING;
            record.phase("RESUMING");
            JsonArray accepted = new JsonArray();
            channels.values().forEach(c -> accepted.add(new JsonObject().put("channel", c.id)
                    .put("device", c.device.name())));
            writer.control(FrameType.ACCEPT, 0, new JsonObject().put("protocol", Frames.PROTOCOL_VERSION)
                    .put("agent", agent).put("devices", accepted));
            events.publish(record, "phase", new JsonObject());
        });
    }

    private void refuse(String reason) {
        if (done) {
            return;
        }
        writer.control(FrameType.REFUSE, 0, new JsonObject().put("reason", reason));
        fail(MigrationException.fromPeer(phase.name(), "refused: " + reason));
    }

    private Channel channel(int id) {
        Channel c = channels.get(id);
        if (c == null) {
            throw new ProtocolException("SECTION frame for channel " + id + ", which the HELLO did not open");
        }
        if (phase != Phase.RESUMING) {
            throw new ProtocolException("SECTION frame for channel " + id + " in phase " + phase);
        }
        return c;
    }

    private void expect(Channel c, Section expected, String what) {
        if (c.section != expected) {
            throw new ProtocolException(what + " on channel " + c.id + " where the section is in state " + c.section);
        }
    }

    private void writeToDevice(Channel c, Buffer piece) {
        int n = piece.length();
        queuedForDevice += n;
        c.device.submit(dc -> {
            if (c.writeError != null || c.aborted) {
                return null;
            }
            try {
                dc.channel().orElseThrow(() -> new VfioException(dc.name(), "write(data_fd)", dc.state(),
                        Errno.EBADF, "no resuming session is open")).write(Frames.nio(piece, 0, n));
            } catch (VfioException e) {
                c.writeError = e;
                throw e;
            }
            return null;
        }).onComplete(ar -> {
            queuedForDevice -= n;
            writtenToDevice += n;
            if (ar.failed()) {
                fail(new MigrationException(phase.name(), ar.cause().getMessage(), ar.cause()));
                return;
            }
            if (drainHandler != null && queuedForDevice < options.deviceWriteQueueBytes() / 2) {
                Handler<Void> h = drainHandler;
                drainHandler = null;
                h.handle(null);
            }
        });
    }

    private void sectionComplete(Channel c) {
        JsonObject config = c.config;
        long bytes = config.getLong("dataBytes", -1L);
        long chunks = config.getLong("dataChunks", -1L);
        if (bytes != c.dataBytes || chunks != c.dataChunks) {
            throw new ProtocolException("channel " + c.id + ": the source sent " + bytes + " bytes in " + chunks
                    + " chunks, " + c.dataBytes + " bytes in " + c.dataChunks + " chunks arrived");
        }
        // Queued behind every write of this device: the device validates the whole stream here.
        c.device.submit(dc -> {
            if (c.writeError != null) {
                throw c.writeError;
            }
            dc.setState(DeviceState.STOP, DeviceState.ERROR, cause("loading the migrated state"));
            return null;
        }).onComplete(ar -> {
            if (done) {
                return;
            }
            if (ar.failed()) {
                fail(new MigrationException("LOADING", "device " + c.device.name() + " rejected the migrated state: "
                        + ar.cause().getMessage(), ar.cause()));
                return;
            }
            c.section = Section.DONE;
            record.dataBytes(channels.values().stream().mapToLong(ch -> ch.dataBytes).sum());
            writer.control(FrameType.LOADED, c.id, new JsonObject().put("device", c.device.name())
                    .put("dataBytes", c.dataBytes));
            if (channels.values().stream().allMatch(ch -> ch.section == Section.DONE)) {
                phase = Phase.LOADED;
                record.phase("LOADED");
                events.publish(record, "phase", new JsonObject());
            }
        });
    }

    private void startDevices() {
        phase = Phase.STARTING;
        record.phase("STARTING");
        List<Future<Void>> starts = new ArrayList<>();
        for (Channel c : channels.values()) {
            starts.add(c.device.setState(DeviceState.RUNNING, DeviceState.ERROR, cause("start after migration")));
        }
        Future.all(starts).onComplete(ar -> {
            if (done) {
                return;
            }
            if (ar.failed()) {
                fail(new MigrationException("STARTING", "a device failed to start: " + ar.cause().getMessage()));
                return;
            }
            writer.control(FrameType.STARTED, 0, new JsonObject().put("devices",
                    new JsonArray(channels.values().stream().map(c -> c.device.name()).toList())));
            done = true;
            phase = Phase.COMPLETED;
            stopTimer();
            release();
            record.completed(DeviceState.RUNNING.name());
            events.publish(record, "completed", new JsonObject());
        });
    }

    private String cause(String what) {
        return "migration " + (record == null ? "?" : record.id()) + ": " + what;
    }

    private void checkProgress() {
        long mark = decoder.bytes() + writtenToDevice;
        long now = System.nanoTime();
        if (mark != lastProgressMark) {
            lastProgressMark = mark;
            lastProgressNanos = now;
            if (record != null && phase == Phase.RESUMING) {
                record.dataBytes(channels.values().stream().mapToLong(c -> c.dataBytes).sum());
            }
            return;
        }
        long idle = (now - lastProgressNanos) / 1_000_000;
        if (idle >= options.progressTimeoutMillis()) {
            fail(new MigrationException(phase.name(), "nothing arrived from " + connection.peer() + " for " + idle
                    + " ms in phase " + phase));
        }
    }

    private void stopTimer() {
        if (timer >= 0) {
            vertx.cancelTimer(timer);
            timer = -1;
        }
    }

    private void release() {
        if (record != null) {
            claimed.forEach(d -> d.release(record.id()));
        }
    }

    private void fail(Throwable cause) {
        if (done) {
            return;
        }
        done = true;
        Phase failedIn = phase;
        phase = Phase.FAILED;
        stopTimer();
        String reason = cause.getMessage() == null ? cause.toString() : cause.getMessage();
        if (cause instanceof MigrationException m && m.isFromPeer()) {
            connection.close();
        } else {
            abortAndLinger(reason);
        }
        List<Future<DeviceState>> safe = new ArrayList<>();
        boolean keepLoaded = failedIn == Phase.LOADED || failedIn == Phase.STARTING;
        for (Channel c : channels.values()) {
            c.aborted = true;
            if (keepLoaded) {
                safe.add(c.device.state());
            } else if (failedIn != Phase.HANDSHAKE) {
                // Only devices this session moved are reset; a refused HELLO leaves every device as it was.
                safe.add(c.device.submit(dc -> {
                    if (dc.state() != DeviceState.RUNNING || dc.channel().isPresent()) {
                        dc.reset(cause("abort after failure: " + reason));
                    }
                    return dc.state();
                }));
            }
        }
        Future.join(safe).onComplete(ar -> {
            release();
            if (record == null) {
                return;
            }
            List<String> states = new ArrayList<>();
            for (Future<DeviceState> f : safe) {
                states.add(f.succeeded() ? f.result().name() : "unknown (" + f.cause().getMessage() + ")");
            }
            String note = keepLoaded ? "; the device keeps the migrated state in STOP and does not run" : "";
            record.failed(failedIn.name(), reason + note, String.join(",", states));
            events.publish(record, "failed", new JsonObject());
        });
    }

    /**
     * Sends ABORT and keeps reading (and dropping) what the source still sends until it closes, or for a short
     * while: closing at once would reset a connection with unread data, and the source would see "Broken pipe"
     * instead of the reason.
     */
    private void abortAndLinger(String reason) {
        writer.control(FrameType.ABORT, 0, new JsonObject().put("reason", reason));
        long linger = vertx.setTimer(ABORT_LINGER_MILLIS, id -> connection.close());
        connection.closeHandler(v -> vertx.cancelTimer(linger));
        if (drainHandler != null) {
            Handler<Void> h = drainHandler;
            drainHandler = null;
            h.handle(null);
        }
    }

    private final class Incoming implements FrameDecoder.Listener {
        @Override
        public void onControl(FrameType type, int channel, JsonObject body) {
            switch (type) {
                case HELLO -> {
                    if (phase != Phase.HANDSHAKE || record != null) {
                        throw new ProtocolException("a second HELLO");
                    }
                    hello(body);
                }
                case START -> {
                    if (phase != Phase.LOADED) {
                        throw new ProtocolException("START in phase " + phase + ", before every device loaded");
                    }
                    startDevices();
                }
                case ABORT -> fail(MigrationException.fromPeer(phase.name(), "the source aborted the migration: "
                        + body.getString("reason", "no reason given")));
                default -> throw new ProtocolException("unexpected " + type + " frame from the source");
            }
        }

        @Override
        public void onMarker(int id, VfioTag tag) {
            Channel c = channel(id);
            switch (tag) {
                case DEV_SETUP_STATE -> {
                    expect(c, Section.SETUP, tag.name());
                    c.section = Section.SETUP_END;
                }
                case END_OF_STATE -> {
                    switch (c.section) {
                        case SETUP_END -> c.section = Section.DATA;
                        case DATA -> { }
                        case CONFIG_END -> {
                            c.section = Section.DONE;
                            sectionComplete(c);
                        }
                        default -> throw new ProtocolException("END_OF_STATE on channel " + c.id
                                + " where the section is in state " + c.section);
                    }
                }
                default -> throw new ProtocolException(tag + " on channel " + c.id
                        + ": only a pre-copy migration sends it, and this one is stop-copy");
            }
        }

        @Override
        public void onConfig(int id, Buffer blob) {
            Channel c = channel(id);
            expect(c, Section.DATA, "DEV_CONFIG_STATE");
            try {
                c.config = new JsonObject(blob.toString(StandardCharsets.UTF_8));
            } catch (DecodeException | ClassCastException e) {
                throw new ProtocolException("DEV_CONFIG_STATE on channel " + c.id + " is not a JSON object");
            }
            c.section = Section.CONFIG_END;
        }

        @Override
        public void onDataStart(int id, long size) {
            expect(channel(id), Section.DATA, "DEV_DATA_STATE");
        }

        @Override
        public void onData(int id, Buffer piece) {
            Channel c = channels.get(id);
            c.dataBytes += piece.length();
            writeToDevice(c, piece);
        }

        @Override
        public void onDataEnd(int id) {
            channels.get(id).dataChunks++;
        }
    }
}
