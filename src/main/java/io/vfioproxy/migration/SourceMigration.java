package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.transport.StreamConnection;
import io.vfioproxy.uapi.DeviceState;
import java.util.function.Supplier;

/**
 * The source side of one migration (stop-copy): handshake, DEV_SETUP_STATE, STOP_COPY, the device's data piped
 * to the connection, END_OF_STATE and DEV_CONFIG_STATE, then wait until the destination has loaded the state.
 *
 * <p>The destination's LOADED is the commit point. Before it, any failure (the connection lost, the destination
 * refusing or aborting, a device error, no progress) returns the source device to RUNNING. After it the device
 * stays in STOP: its state now lives on the destination.
 *
 * <p>Runs on one event-loop context; device calls go to the device's worker thread.
 */
public final class SourceMigration {

    private static final int CHANNEL = 0;

    private final Vertx vertx;
    private final String agent;
    private final MigrationRecord record;
    private final DeviceHandle device;
    private final String targetDevice;
    private final Supplier<Future<StreamConnection>> connect;
    private final MigrationOptions options;
    private final MigrationEvents events;
    private final Promise<MigrationRecord> result = Promise.promise();

    private StreamConnection connection;
    private FrameWriter writer;
    private FrameDecoder decoder;
    private SectionSender sender;
    private Promise<JsonObject> waiter;
    private FrameType waitingFor;
    private long timer = -1;
    private long lastProgressMark = -1;
    private long lastProgressNanos;
    private long downtimeStart;
    private boolean committed;
    private boolean done;

    public SourceMigration(Vertx vertx, String agent, MigrationRecord record, DeviceHandle device,
            String targetDevice, Supplier<Future<StreamConnection>> connect, MigrationOptions options,
            MigrationEvents events) {
        this.vertx = vertx;
        this.agent = agent;
        this.record = record;
        this.device = device;
        this.targetDevice = targetDevice;
        this.connect = connect;
        this.options = options;
        this.events = events;
    }

    /** Starts the migration; the future completes when it completed, or fails once the source device is safe. */
    public Future<MigrationRecord> run() {
        lastProgressNanos = System.nanoTime();
        timer = vertx.setPeriodic(Math.max(10, Math.min(250, options.progressTimeoutMillis() / 4)),
                id -> checkProgress());
        phase("CONNECTING");
        connect.get()
                .compose(this::handshake)
                .compose(accept -> setup())
                .compose(v -> stopCopy())
                .compose(v -> endOfSection())
                .compose(v -> await(FrameType.LOADED))
                .compose(this::commit)
                .compose(v -> startDestination())
                .onComplete(ar -> {
                    if (ar.succeeded()) {
                        complete();
                    } else {
                        fail(ar.cause());
                    }
                });
        return result.future();
    }

    private Future<JsonObject> handshake(StreamConnection conn) {
        connection = conn;
        writer = new FrameWriter(conn.output());
        decoder = new FrameDecoder(options.limits(), new Incoming());
        conn.input().exceptionHandler(this::fail);
        conn.input().handler(this::receive);
        conn.closeHandler(v -> fail(new MigrationException(record.phase(), "the connection to " + conn.peer()
                + " closed")));
        record.devices(device.name(), targetDevice, conn.peer());
        record.stateSize(device.identity().stateSize());
        phase("HANDSHAKE");
        JsonObject hello = new JsonObject()
                .put("protocol", Frames.PROTOCOL_VERSION)
                .put("migration", record.id())
                .put("sourceAgent", agent)
                .put("chunkSize", options.chunkSize())
                .put("devices", new JsonArray().add(SectionSender.helloEntry(device, CHANNEL, targetDevice)));
        writer.control(FrameType.HELLO, CHANNEL, hello);
        sender = new SectionSender(device, writer, CHANNEL, options.chunkSize());
        return await(FrameType.ACCEPT);
    }

    private Future<Void> setup() {
        phase("SETUP");
        return sender.setup();
    }

    private Future<Void> stopCopy() {
        phase("STOP_COPY");
        downtimeStart = System.nanoTime();
        return sender.stopCopy(cause("stop-copy")).onSuccess(v -> record.dataBytes(sender.bytesRead()));
    }

    private Future<Void> endOfSection() {
        Future<Void> last = sender.end();
        phase("LOADING");
        return last.onSuccess(v -> record.stopCopyNanos(System.nanoTime() - downtimeStart));
    }

    private Future<Void> commit(JsonObject loaded) {
        record.downtimeNanos(System.nanoTime() - downtimeStart);
        committed = true;
        events.publish(record, "committed", new JsonObject().put("loaded", loaded));
        // Leaving STOP_COPY is not on the downtime path (QEMU defers it to cleanup for the same reason).
        return device.setState(DeviceState.STOP, DeviceState.ERROR, cause("state moved to the destination"));
    }

    private Future<Void> startDestination() {
        if (!options.startDestination()) {
            return Future.succeededFuture();
        }
        phase("STARTING");
        writer.control(FrameType.START, CHANNEL, new JsonObject());
        return await(FrameType.STARTED).onSuccess(v -> record.destinationStarted(true)).mapEmpty();
    }

    private void receive(Buffer data) {
        try {
            decoder.feed(data);
        } catch (ProtocolException e) {
            fail(e);
        }
    }

    private Future<JsonObject> await(FrameType type) {
        waiter = Promise.promise();
        waitingFor = type;
        return waiter.future();
    }

    private void phase(String phase) {
        record.phase(phase);
        events.publish(record, "phase", new JsonObject());
    }

    private String cause(String what) {
        return "migration " + record.id() + ": " + what;
    }

    /** Our own errors say what they mean; anything else came from the network and is placed in context. */
    private String describe(Throwable cause) {
        String message = cause.getMessage() == null ? cause.getClass().getSimpleName() : cause.getMessage();
        if (cause instanceof MigrationException || cause instanceof VfioException
                || cause instanceof ProtocolException) {
            return message;
        }
        if (connection == null) {
            return "cannot connect to the destination " + record.toJson().getString("peer") + ": " + message;
        }
        return "the connection to " + connection.peer() + " failed in phase " + record.phase() + ": " + message;
    }

    private void checkProgress() {
        long mark = (writer == null ? 0 : writer.bytesWritten()) + (decoder == null ? 0 : decoder.bytes());
        long now = System.nanoTime();
        if (mark != lastProgressMark) {
            lastProgressMark = mark;
            lastProgressNanos = now;
            if (sender != null) {
                // Monotonic: the final count (every byte read) is set when stop-copy ends, writes may lag it.
                record.dataBytes(Math.max(record.dataBytes(), writer.dataBytesWritten()));
            }
            return;
        }
        long idleMillis = (now - lastProgressNanos) / 1_000_000;
        if (idleMillis >= options.progressTimeoutMillis()) {
            fail(new MigrationException(record.phase(), "no progress for " + idleMillis + " ms in phase "
                    + record.phase() + ": the destination stopped reading or answering"));
        }
    }

    private void stopTimer() {
        if (timer >= 0) {
            vertx.cancelTimer(timer);
            timer = -1;
        }
    }

    private void complete() {
        if (done) {
            return;
        }
        done = true;
        stopTimer();
        connection.close();
        device.release(record.id());
        record.completed(DeviceState.STOP.name());
        events.publish(record, "completed", new JsonObject());
        result.complete(record);
    }

    private void fail(Throwable cause) {
        if (done) {
            return;
        }
        done = true;
        stopTimer();
        String phase = cause instanceof MigrationException m ? m.phase() : record.phase();
        String reason = describe(cause);
        if (waiter != null) {
            waiter.tryFail(cause);
        }
        if (sender != null) {
            sender.close();
        }
        if (connection != null) {
            if (!(cause instanceof MigrationException m && m.isFromPeer())) {
                writer.control(FrameType.ABORT, CHANNEL, new JsonObject().put("reason", reason));
            }
            connection.close();
        }
        if (committed) {
            // The destination holds the state: the migration completed, only the confirmation of its start is missing.
            record.destinationStarted(false);
            device.release(record.id());
            record.completed(DeviceState.STOP.name());
            events.publish(record, "completed", new JsonObject().put("warning",
                    "the destination did not confirm that its device runs: " + reason));
            result.complete(record);
            return;
        }
        DeviceSafety.resume(device, cause("rollback after failure: " + reason)).onComplete(ar -> {
            String after = ar.succeeded() ? ar.result().name() : "unknown (" + ar.cause().getMessage() + ")";
            device.release(record.id());
            record.failed(phase, reason, after);
            events.publish(record, "failed", new JsonObject());
            result.fail(new MigrationException(phase, reason, cause));
        });
    }

    private final class Incoming implements FrameDecoder.Listener {
        @Override
        public void onControl(FrameType type, int channel, JsonObject body) {
            switch (type) {
                case REFUSE -> fail(MigrationException.fromPeer(record.phase(), "the destination refused the migration: "
                        + body.getString("reason", "no reason given")));
                case ABORT -> fail(MigrationException.fromPeer(record.phase(), "the destination aborted the migration: "
                        + body.getString("reason", "no reason given")));
                default -> {
                    if (type != waitingFor || waiter == null) {
                        throw new ProtocolException("unexpected " + type + " frame from the destination in phase "
                                + record.phase());
                    }
                    Promise<JsonObject> w = waiter;
                    waiter = null;
                    waitingFor = null;
                    w.complete(body);
                }
            }
        }

        @Override
        public void onMarker(int channel, VfioTag tag) {
            throw new ProtocolException("unexpected SECTION frame from the destination");
        }

        @Override
        public void onConfig(int channel, Buffer blob) {
            throw new ProtocolException("unexpected SECTION frame from the destination");
        }

        @Override
        public void onDataStart(int channel, long size) {
            throw new ProtocolException("unexpected SECTION frame from the destination");
        }

        @Override
        public void onData(int channel, Buffer piece) {
            throw new ProtocolException("unexpected SECTION frame from the destination");
        }

        @Override
        public void onDataEnd(int channel) {
            throw new ProtocolException("unexpected SECTION frame from the destination");
        }
    }
}
