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
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * The source side of one migration of one or more devices, multiplexed on one connection.
 *
 * <ol>
 *   <li>Handshake: HELLO with every device's identity; the destination checks compatibility and answers ACCEPT
 *       before any device leaves RUNNING.</li>
 *   <li>Pre-copy (devices that support it): RUNNING -&gt; PRE_COPY, and the data flows while the devices run,
 *       initial data first, then what they dirty. The migration is ready to switch over once every device's
 *       initial data is out and acknowledged by the destination (DEV_INIT_DATA_SENT, SWITCHOVER_ACK), and the
 *       rest is expected to take no longer than the downtime limit at the measured bandwidth; or once the
 *       pre-copy budget has run out. With a manual switchover it then waits for {@link #release()}, pre-copy
 *       going on meanwhile.</li>
 *   <li>Switchover: every device to RUNNING_P2P or PRE_COPY_P2P first, so none sends peer-to-peer DMA to a
 *       stopped peer; then every device to STOP_COPY and the rest of each stream, in parallel.</li>
 *   <li>The destination's LOADED for every device is the commit point; then the devices stay in STOP and the
 *       destination is told to START.</li>
 * </ol>
 *
 * <p>Before the commit, any failure or a {@link #cancel()} returns every source device to RUNNING, and the
 * destination, told by ABORT or by the lost connection, resets its devices.
 *
 * <p>Runs on one event-loop context; device calls go to each device's worker thread.
 */
public final class SourceMigration {

    private static final long CONVERGENCE_CHECK_MILLIS = 10;
    /** After our ABORT, how long the connection stays open, read and discarded, so the destination reads the reason. */
    private static final long ABORT_LINGER_MILLIS = 2000;

    private final Vertx vertx;
    private final String agent;
    private final MigrationRecord record;
    private final List<DeviceHandle> devices;
    private final List<String> targets;
    private final Supplier<Future<StreamConnection>> connect;
    private final MigrationOptions options;
    private final MigrationRequest request;
    private final MigrationEvents events;
    private final Promise<MigrationRecord> result = Promise.promise();
    private final List<SectionSender> senders = new ArrayList<>();
    private final Set<Integer> acked = new HashSet<>();
    private final Promise<JsonObject> accepted = Promise.promise();
    private final Promise<Void> loaded = Promise.promise();
    private final Promise<Void> started = Promise.promise();
    private final Promise<Void> converged = Promise.promise();
    private final Promise<Void> released = Promise.promise();

    private StreamConnection connection;
    private FrameWriter writer;
    private FrameDecoder decoder;
    private boolean precopy;
    private int loadedCount;
    private long timer = -1;
    private long convergenceTimer = -1;
    private long lastProgressMark = -1;
    private long lastProgressNanos;
    private long transferStart;
    private long precopyStart;
    private long downtimeStart;
    private final BandwidthMeter meter = new BandwidthMeter();
    private SwitchoverPolicy policy;
    private boolean committed;
    private boolean done;

    /**
     * @param devices the source devices, claimed for this migration; {@code request} names their targets
     */
    public SourceMigration(Vertx vertx, String agent, MigrationRecord record, List<DeviceHandle> devices,
            MigrationRequest request, Supplier<Future<StreamConnection>> connect, MigrationOptions options,
            MigrationEvents events) {
        this.vertx = vertx;
        this.agent = agent;
        this.record = record;
        this.devices = List.copyOf(devices);
        this.targets = request.devices().stream().map(MigrationRequest.DevicePair::targetDevice).toList();
        this.request = request;
        this.connect = connect;
        this.options = options;
        this.events = events;
    }

    /** Starts the migration; the future completes when it completed, or fails once the source devices are safe. */
    public Future<MigrationRecord> run() {
        precopy = request.mode() == MigrationRequest.Mode.PRECOPY && devices.stream().anyMatch(d -> d.flags().preCopy());
        record.mode(precopy ? "precopy" : "stop-copy");
        lastProgressNanos = System.nanoTime();
        timer = vertx.setPeriodic(Math.max(10, Math.min(100, options.progressTimeoutMillis() / 4)),
                id -> checkProgress());
        phase("CONNECTING");
        connect.get()
                .compose(this::handshake)
                .compose(accept -> setup())
                .compose(v -> precopy())
                .compose(v -> switchover())
                .compose(v -> endSections())
                .compose(v -> loaded.future())
                .compose(v -> commit())
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

    /**
     * Cancels the migration: every source device returns to RUNNING, the destination resets its devices.
     *
     * @return null when cancelled, else why not (it has ended, or the destination has the state already)
     */
    public String cancel() {
        if (done) {
            return "migration " + record.id() + " has already ended (" + record.outcome().name().toLowerCase() + ")";
        }
        if (committed) {
            return "migration " + record.id() + " has committed: the destination holds the state";
        }
        fail(MigrationException.cancelled(record.phase()));
        return null;
    }

    /**
     * Ends the migration because the agent stops, before its devices close: the source devices go back to RUNNING
     * unless the destination already holds the state. A no-op once the migration ended.
     */
    public void shutdown() {
        fail(new MigrationException(record.phase(), "agent " + agent + " is shutting down"));
    }

    /**
     * Lets a manual switchover go on.
     *
     * @return null when released (now, or as soon as the migration is ready), else why it cannot be
     */
    public String release() {
        if (done) {
            return "migration " + record.id() + " has already ended (" + record.outcome().name().toLowerCase() + ")";
        }
        if (!request.manualSwitchover() || !precopy) {
            return "migration " + record.id() + " switches over by itself: it is not a manual pre-copy migration";
        }
        released.tryComplete();
        return null;
    }

    private Future<JsonObject> handshake(StreamConnection conn) {
        connection = conn;
        writer = new FrameWriter(conn.output());
        decoder = new FrameDecoder(options.limits(), new Incoming());
        conn.input().exceptionHandler(this::fail);
        conn.input().handler(this::receive);
        conn.closeHandler(v -> fail(new MigrationException(record.phase(), "the connection to " + conn.peer()
                + " closed")));
        conn.shutdownHandler(v -> shutdown());
        for (int i = 0; i < devices.size(); i++) {
            senders.add(new SectionSender(vertx, devices.get(i), targets.get(i), writer, i, options.chunkSize()));
        }
        phase("HANDSHAKE");
        JsonObject hello = new JsonObject()
                .put("protocol", Frames.PROTOCOL_VERSION)
                .put("migration", record.id())
                .put("sourceAgent", agent)
                .put("mode", precopy ? "precopy" : "stop-copy")
                .put("chunkSize", options.chunkSize())
                .put("devices", new JsonArray(senders.stream().map(SectionSender::helloEntry).toList()));
        writer.control(FrameType.HELLO, 0, hello);
        return accepted.future();
    }

    private Future<Void> each(Function<SectionSender, Future<Void>> step) {
        List<Future<Void>> all = new ArrayList<>();
        senders.forEach(s -> all.add(step.apply(s)));
        return Future.all(all).mapEmpty();
    }

    private Future<Void> setup() {
        phase("SETUP");
        transferStart = System.nanoTime();
        return each(SectionSender::setup);
    }

    private Future<Void> precopy() {
        if (!precopy) {
            return Future.succeededFuture();
        }
        phase("PRECOPY");
        precopyStart = System.nanoTime();
        policy = new SwitchoverPolicy(request.downtimeLimitMillis(), request.precopyBudgetMillis());
        return each(s -> s.device().flags().preCopy() ? s.startPrecopy(cause("pre-copy"))
                : Future.succeededFuture())
                .compose(v -> {
                    convergenceTimer = vertx.setPeriodic(CONVERGENCE_CHECK_MILLIS, id -> checkConvergence());
                    return converged.future();
                })
                .compose(v -> {
                    if (!request.manualSwitchover()) {
                        return Future.succeededFuture();
                    }
                    phase("READY_FOR_SWITCHOVER");
                    events.publish(record, "ready-for-switchover", new JsonObject());
                    return released.future();
                });
    }

    /** P2P quiescing for all first, then STOP_COPY for all; completes when every device's data has been read. */
    private Future<Void> switchover() {
        phase("SWITCHOVER");
        cancelConvergenceTimer();
        downtimeStart = System.nanoTime();
        return each(SectionSender::hold)
                .compose(v -> each(s -> s.quiesce(cause("switchover: P2P quiesced"))))
                .compose(v -> {
                    phase("STOP_COPY");
                    return each(s -> s.stopCopy(cause("stop-copy")));
                });
    }

    private Future<Void> endSections() {
        updateTransfer();
        Future<Void> last = each(SectionSender::end);
        phase("LOADING");
        return last.onSuccess(v -> {
            long now = System.nanoTime();
            record.stopCopyNanos(now - downtimeStart);
            record.transferNanos(now - transferStart);
        });
    }

    private Future<Void> commit() {
        record.downtimeNanos(System.nanoTime() - downtimeStart);
        committed = true;
        events.publish(record, "committed", new JsonObject());
        // Leaving STOP_COPY is not on the downtime path (QEMU defers it to cleanup for the same reason).
        List<Future<Void>> stops = new ArrayList<>();
        devices.forEach(d -> stops.add(d.setState(DeviceState.STOP, DeviceState.ERROR,
                cause("state moved to the destination"))));
        return Future.all(stops).mapEmpty();
    }

    private Future<Void> startDestination() {
        if (!options.startDestination()) {
            return Future.succeededFuture();
        }
        phase("STARTING");
        writer.control(FrameType.START, 0, new JsonObject());
        return started.future().onSuccess(v -> record.destinationStarted(true));
    }

    private void receive(Buffer data) {
        try {
            decoder.feed(data);
        } catch (ProtocolException e) {
            fail(e);
        }
    }

    private void phase(String phase) {
        record.phase(phase);
        events.publish(record, "phase", new JsonObject());
    }

    private String cause(String what) {
        return "migration " + record.id() + ": " + what;
    }

    private void updateTransfer() {
        long pre = 0;
        long stop = 0;
        long iterations = 0;
        long remaining = 0;
        for (SectionSender s : senders) {
            pre += s.precopyBytes();
            stop += s.stopCopyBytes();
            iterations += s.iterations();
            remaining += s.remainingEstimate();
            record.deviceBytes(s.device().name(), s.precopyBytes(), s.stopCopyBytes());
        }
        record.transfer(pre, stop, iterations);
        record.remainingBytes("PRECOPY".equals(record.phase()) || "READY_FOR_SWITCHOVER".equals(record.phase())
                ? remaining : Math.max(0, record.stateSize() - pre - stop));
        record.dataBytes(Math.max(record.dataBytes(), pre + stop));
        record.bandwidth((long) meter.estimate().bytesPerSecond());
    }

    /** Every 10 ms in pre-copy: measure the bandwidth, decide whether to switch over. */
    private void checkConvergence() {
        long now = System.nanoTime();
        meter.sample(now, writer.dataBytesWritten());
        updateTransfer();
        if (converged.future().isComplete()) {
            return;
        }
        boolean initialOut = true;
        boolean acknowledged = true;
        long remaining = 0;
        for (SectionSender s : senders) {
            remaining += s.remainingEstimate();
            if (s.device().flags().preCopy()) {
                initialOut &= s.initialDataSent();
                acknowledged &= acked.contains(s.channel());
            }
        }
        SwitchoverPolicy.Decision decision = policy.decide(new SwitchoverPolicy.Progress(remaining, meter.estimate(),
                initialOut, acknowledged, record.iterations(), (now - precopyStart) / 1_000_000));
        if (decision.switchOver()) {
            record.switchoverReason(decision.reason());
            converged.tryComplete();
        }
    }

    private void checkProgress() {
        long mark = (writer == null ? 0 : writer.bytesWritten()) + (decoder == null ? 0 : decoder.bytes());
        long now = System.nanoTime();
        if (writer != null) {
            meter.sample(now, writer.dataBytesWritten());
        }
        if (mark != lastProgressMark || "READY_FOR_SWITCHOVER".equals(record.phase())) {
            lastProgressMark = mark;
            lastProgressNanos = now;
            if (!senders.isEmpty()) {
                updateTransfer();
            }
            return;
        }
        long idleMillis = (now - lastProgressNanos) / 1_000_000;
        if (idleMillis >= options.progressTimeoutMillis()) {
            fail(new MigrationException(record.phase(), "no progress for " + idleMillis + " ms in phase "
                    + record.phase() + ": the destination stopped reading or answering"));
        }
    }

    private void cancelConvergenceTimer() {
        if (convergenceTimer >= 0) {
            vertx.cancelTimer(convergenceTimer);
            convergenceTimer = -1;
        }
    }

    private void stopTimers() {
        cancelConvergenceTimer();
        if (timer >= 0) {
            vertx.cancelTimer(timer);
            timer = -1;
        }
    }

    private void releaseDevices() {
        devices.forEach(d -> d.release(record.id()));
    }

    private void complete() {
        if (done) {
            return;
        }
        done = true;
        stopTimers();
        connection.close();
        releaseDevices();
        record.completed(DeviceState.STOP.name());
        events.publish(record, "completed", new JsonObject());
        result.complete(record);
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

    private void fail(Throwable cause) {
        if (done) {
            return;
        }
        done = true;
        stopTimers();
        String phase = cause instanceof MigrationException m ? m.phase() : record.phase();
        String reason = describe(cause);
        List.of(accepted, loaded, started, converged, released).forEach(p -> p.tryFail(cause));
        senders.forEach(SectionSender::close);
        if (connection != null) {
            if (cause instanceof MigrationException m && m.isFromPeer()) {
                connection.close();
            } else {
                writer.control(FrameType.ABORT, 0, new JsonObject().put("reason", reason));
                connection.lingerAndClose(vertx, ABORT_LINGER_MILLIS);
            }
        }
        if (committed) {
            // The destination holds the state: the migration completed, only the confirmation of its start is missing.
            record.destinationStarted(false);
            releaseDevices();
            record.completed(DeviceState.STOP.name());
            events.publish(record, "completed", new JsonObject().put("warning",
                    "the destination did not confirm that its devices run: " + reason));
            result.complete(record);
            return;
        }
        List<Future<DeviceState>> safe = new ArrayList<>();
        devices.forEach(d -> safe.add(DeviceSafety.resume(d, cause("rollback: " + reason))));
        Future.join(safe).onComplete(ar -> {
            releaseDevices();
            boolean cancelled = cause instanceof MigrationException m && m.isCancelled();
            if (cancelled) {
                record.cancelled(phase, reason, DeviceSafety.describe(safe));
            } else {
                record.failed(phase, reason, DeviceSafety.describe(safe));
            }
            events.publish(record, cancelled ? "cancelled" : "failed", new JsonObject());
            result.fail(cause instanceof MigrationException ? cause : new MigrationException(phase, reason, cause));
        });
    }

    private final class Incoming implements FrameDecoder.Listener {
        @Override
        public void onControl(FrameType type, int channel, JsonObject body) {
            switch (type) {
                case ACCEPT -> accepted.tryComplete(body);
                case SWITCHOVER_ACK -> acked.add(channel);
                case LOADED -> {
                    if (++loadedCount == devices.size()) {
                        loaded.tryComplete();
                    }
                }
                case STARTED -> started.tryComplete();
                case REFUSE -> fail(MigrationException.fromPeer(record.phase(), "the destination refused the migration: "
                        + body.getString("reason", "no reason given")));
                case ABORT -> fail(MigrationException.fromPeer(record.phase(), "the destination aborted the migration: "
                        + body.getString("reason", "no reason given")));
                default -> throw new ProtocolException("unexpected " + type + " frame from the destination in phase "
                        + record.phase());
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
