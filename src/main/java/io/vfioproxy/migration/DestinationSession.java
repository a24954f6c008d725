package io.vfioproxy.migration;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.transport.StreamConnection;
import io.vfioproxy.uapi.DeviceState;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * The destination side of one connection: checks the HELLO, moves each named device to RESUMING, loads the
 * device sections as they arrive ({@link SectionLoader}), tells the source LOADED per device, and runs the
 * devices on START.
 *
 * <p>Backpressure: the connection is piped into this session; while the devices lag, the pipe pauses the socket,
 * TCP's window closes and the source stops reading its device.
 *
 * <p>START runs the devices in P2P order: every device to RUNNING_P2P before any goes to RUNNING.
 *
 * <p>Any failure before LOADED resets every device of the session (the only way out of RESUMING) and tells the
 * source why; so does an ABORT from the source after LOADED (it did not commit). A connection lost after LOADED
 * leaves the devices in STOP with the migrated state: the source may have committed, so that state is kept, but
 * it is not run.
 */
public final class DestinationSession {

    private enum Phase { HANDSHAKE, RESUMING, LOADED, STARTING, COMPLETED, FAILED }

    /** After ABORT, how long the connection stays open, read and discarded, so the source can read the reason. */
    private static final long ABORT_LINGER_MILLIS = 2000;

    private final Vertx vertx;
    private final String agent;
    private final StreamConnection connection;
    private final DeviceRegistry devices;
    private final MigrationOptions options;
    private final MigrationEvents events;
    private final Function<String, MigrationRecord> register;
    private final List<DeviceHandle> claimed = new ArrayList<>();
    private final FrameWriter writer;
    private final FrameDecoder decoder;
    private SectionLoader loader;
    private DecodingSink sink;
    private MigrationRecord record;
    private Phase phase = Phase.HANDSHAKE;
    private long timer = -1;
    private long lastProgressMark = -1;
    private long lastProgressNanos;
    private boolean done;
    private Context context;
    /** Completes once the session ended and its devices are in their final state. */
    private final Promise<Void> settled = Promise.promise();

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
        this.decoder = new FrameDecoder(options.limits(), SectionLoader.listener(this::sections, this::onControl));
    }

    /** Starts serving the connection. */
    public void start() {
        context = vertx.getOrCreateContext();
        lastProgressNanos = System.nanoTime();
        timer = vertx.setPeriodic(Math.max(10, Math.min(100, options.progressTimeoutMillis() / 4)),
                id -> checkProgress());
        connection.closeHandler(v -> connectionEnded());
        connection.shutdownHandler(v -> {
            if (done) {
                connection.close();
            } else {
                fail(new MigrationException(phase.name(), "agent " + agent + " is shutting down"));
            }
        });
        sink = new DecodingSink(decoder, () -> loader, e -> fail(new MigrationException(phase.name(),
                "protocol error from " + connection.peer() + ": " + e.getMessage(), e)));
        connection.input().pipe().endOnSuccess(false).endOnFailure(false).to(sink).onComplete(ar -> {
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
        String mode = hello.getString("mode", "stop-copy");
        if (!mode.equals("stop-copy") && !mode.equals("precopy")) {
            refuse("unknown mode '" + mode + "'");
            return;
        }
        loader = new SectionLoader("migration " + id, mode.equals("precopy"), options.deviceWriteQueueBytes(),
                new Loaded());
        loader.retainInput(connection::retainInput);
        List<String> sources = new ArrayList<>();
        for (int i = 0; i < list.size(); i++) {
            JsonObject d = list.getJsonObject(i);
            int ch = d.getInteger("channel", -1);
            String target = d.getString("targetDevice");
            if (ch < 0 || ch > 255 || loader.hasChannel(ch)) {
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
            String incompatible = Compatibility.check(local, d.getString("sourceDevice"),
                    DeviceIdentity.fromJson(d.getJsonObject("identity", new JsonObject())));
            if (incompatible != null) {
                refuse(incompatible);
                return;
            }
            loader.open(ch, local);
            sources.add(d.getString("sourceDevice"));
        }
        record.devices(String.join(",", loader.devices().stream().map(DeviceHandle::name).toList()),
                String.join(",", sources), connection.peer());
        record.stateSize(loader.devices().stream().mapToLong(d -> d.identity().stateSize()).sum());
        events.publish(record, "started", new JsonObject());
        List<Future<Void>> resuming = new ArrayList<>();
        for (DeviceHandle d : loader.devices()) {
            resuming.add(d.submit(dc -> {
                dc.setState(DeviceState.RESUMING, dc.state(), cause("resuming"));
                return null;
            }));
        }
        Future.all(resuming).onComplete(ar -> {
            if (done) {
                return;
            }
            phase = Phase.RESUMING;
            if (ar.failed()) {
                // Devices that did reach RESUMING are reset by fail(); the others recovered their state.
                refuse("a device could not enter RESUMING: " + ar.cause().getMessage());
                return;
            }
            record.phase("RESUMING");
            JsonArray accepted = new JsonArray();
            loader.channelIds().forEach(ch -> accepted.add(new JsonObject().put("channel", ch)));
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

    /** What the loader reports: LOADED per device, or the failure. */
    private final class Loaded implements SectionLoader.Events {
        @Override
        public void loaded(int channel, DeviceHandle device, long dataBytes) {
            if (done) {
                return;
            }
            record.dataBytes(loader.dataBytes());
            record.deviceBytes(device.name(), 0, dataBytes);
            writer.control(FrameType.LOADED, channel, new JsonObject().put("device", device.name())
                    .put("dataBytes", dataBytes));
            if (loader.allLoaded()) {
                phase = Phase.LOADED;
                record.phase("LOADED");
                events.publish(record, "phase", new JsonObject());
            }
        }

        @Override
        public void failed(Throwable cause) {
            fail(cause instanceof MigrationException ? cause
                    : new MigrationException(phase.name(), cause.getMessage(), cause));
        }

        @Override
        public void initialDataLoaded(int channel) {
            if (!done) {
                writer.control(FrameType.SWITCHOVER_ACK, channel, new JsonObject());
            }
        }
    }

    /** Every device to RUNNING_P2P before any runs, so none sends P2P DMA to a peer that is not ready. */
    private Future<Void> startInOrder() {
        List<Future<Void>> quiesced = new ArrayList<>();
        for (DeviceHandle d : loader.devices()) {
            if (d.flags().p2p()) {
                quiesced.add(d.setState(DeviceState.RUNNING_P2P, DeviceState.ERROR, cause("start: P2P quiesced")));
            }
        }
        return Future.all(quiesced).compose(v -> {
            List<Future<Void>> running = new ArrayList<>();
            for (DeviceHandle d : loader.devices()) {
                running.add(d.setState(DeviceState.RUNNING, DeviceState.ERROR, cause("start after migration")));
            }
            return Future.all(running);
        }).mapEmpty();
    }

    private void startDevices() {
        phase = Phase.STARTING;
        record.phase("STARTING");
        startInOrder().onComplete(ar -> {
            if (done) {
                return;
            }
            if (ar.failed()) {
                fail(new MigrationException("STARTING", "a device failed to start: " + ar.cause().getMessage()));
                return;
            }
            // The source reads STARTED before it sees the connection end.
            writer.control(FrameType.STARTED, 0, new JsonObject().put("devices",
                    new JsonArray(loader.devices().stream().map(DeviceHandle::name).toList())))
                    .onComplete(v -> connection.close());
            done = true;
            sink.stop();
            phase = Phase.COMPLETED;
            stopTimer();
            release();
            record.completed(DeviceState.RUNNING.name());
            events.publish(record, "completed", new JsonObject());
            settled.tryComplete();
        });
    }

    private String cause(String what) {
        return "migration " + (record == null ? "?" : record.id()) + ": " + what;
    }

    private void checkProgress() {
        long mark = decoder.bytes() + (loader == null ? 0 : loader.written());
        long now = System.nanoTime();
        if (mark != lastProgressMark) {
            lastProgressMark = mark;
            lastProgressNanos = now;
            if (record != null && loader != null && phase == Phase.RESUMING) {
                record.dataBytes(loader.dataBytes());
                loader.devices().forEach(dev -> record.deviceBytes(dev.name(), 0, loader.dataBytes(dev)));
                record.remainingBytes(Math.max(0, record.stateSize() - loader.dataBytes()));
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
        sink.stop();
        if (loader != null) {
            loader.abort();
        }
        if (cause instanceof SourceAbort || cause instanceof MigrationException m && m.isFromPeer()) {
            connection.close();
        } else {
            abortAndLinger(reason);
        }
        // A connection lost after LOADED leaves the source's decision unknown: keep the state. An ABORT from the
        // source says it did not commit: reset.
        boolean keepLoaded = (failedIn == Phase.LOADED || failedIn == Phase.STARTING) && !(cause instanceof SourceAbort);
        List<Future<DeviceState>> safe = new ArrayList<>();
        if (loader != null && failedIn != Phase.HANDSHAKE) {
            // Only devices this session moved are reset; a refused HELLO leaves every device as it was.
            for (DeviceHandle d : loader.devices()) {
                safe.add(keepLoaded ? d.state() : DeviceSafety.reset(d, cause("abort after failure: " + reason)));
            }
        }
        Future.join(safe).onComplete(ar -> {
            release();
            settled.tryComplete();
            if (record == null) {
                return;
            }
            String note = keepLoaded ? "; the device keeps the migrated state in STOP and does not run" : "";
            record.failed(failedIn.name(), reason + note, DeviceSafety.describe(safe));
            events.publish(record, "failed", new JsonObject());
        });
    }

    /** Completes once the session ended and its devices are in their final state. */
    Future<Void> settled() {
        return settled.future();
    }

    /**
     * Ends the session because the agent stops, before its devices close: the devices it moved are reset (or keep
     * a loaded state, as after any failure past LOADED). Callable from any thread.
     *
     * @return completes once the devices are in their final state
     */
    public Future<Void> shutdown() {
        context.runOnContext(v -> fail(new MigrationException(phase.name(), "agent " + agent + " is shutting down")));
        return settled.future();
    }

    /**
     * Sends ABORT and keeps reading (and dropping) what the source still sends until it closes, or for a short
     * while: closing at once would reset a connection with unread data, and the source would see "Broken pipe"
     * instead of the reason.
     */
    private void abortAndLinger(String reason) {
        writer.control(FrameType.ABORT, 0, new JsonObject().put("reason", reason));
        connection.lingerAndClose(vertx, ABORT_LINGER_MILLIS);
    }

    /** The source's ABORT: it ended the migration and did not commit. */
    private static final class SourceAbort extends RuntimeException {
        SourceAbort(String message) {
            super(message);
        }
    }

    private void onControl(FrameType type, int channel, JsonObject body) {
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
            case ABORT -> fail(new SourceAbort("the source aborted the migration: "
                    + body.getString("reason", "no reason given")));
            default -> throw new ProtocolException("unexpected " + type + " frame from the source");
        }
    }

    /** The loader, where SECTION frames may come: after ACCEPT, before the devices loaded. */
    private SectionLoader sections() {
        if (phase != Phase.RESUMING) {
            throw new ProtocolException("SECTION frame in phase " + phase);
        }
        return loader;
    }
}
