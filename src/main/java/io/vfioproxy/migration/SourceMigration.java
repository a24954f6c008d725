package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.migration.MigrationEvents.Lifecycle;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.migration.MigrationStatus.DeviceBytes;
import io.vfioproxy.migration.MigrationStatus.Outcome;
import io.vfioproxy.migration.MigrationStatus.Timing;
import io.vfioproxy.migration.MigrationStatus.Transfer;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.uapi.DeviceState;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * The source side of one migration of one or more devices, on one connection or, where the destination takes the
 * feature {@code device-connections}, one per device ({@link DeviceLink}) with the control on the first: a
 * coordinator that walks the phases, one method each, over parts with one job each ({@link SectionSender} per
 * device, {@link Hello}, {@link BandwidthMeter}, {@link SwitchoverPolicy}, {@link ProgressWatchdog},
 * {@link DeviceSafety}).
 *
 * <ol>
 *   <li>HANDSHAKE: HELLO with every device's identity; the destination checks compatibility and answers ACCEPT
 *       before any device leaves RUNNING.</li>
 *   <li>PRECOPY (devices that support it): RUNNING -&gt; PRE_COPY, and the data flows while the devices run, until
 *       the {@link SwitchoverPolicy} says switch over. With a manual switchover it then waits for {@link #release()}
 *       in READY_FOR_SWITCHOVER, pre-copy going on meanwhile.</li>
 *   <li>SWITCHOVER: every device to RUNNING_P2P or PRE_COPY_P2P first, so none sends peer-to-peer DMA to a stopped
 *       peer; then STOP_COPY: every device to STOP_COPY and the rest of each stream, in parallel.</li>
 *   <li>LOADING: the destination's LOADED for every device is the commit point; then the devices stay in STOP and
 *       the destination is told to START.</li>
 * </ol>
 *
 * <p>Before the commit, any failure or a {@link #cancel()} returns every source device to RUNNING (ABORTING), and
 * the destination, told by ABORT or by the lost connection, resets its devices.
 *
 * <p>Runs on one event-loop context; device calls go to each device's worker thread.
 */
public final class SourceMigration {

    private static final long CONVERGENCE_CHECK_MILLIS = 10;
    private static final long STATUS_MILLIS = 100;
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
    private final Journal journalStore;
    /** This migration's entries in the node's journal, from the moment its devices' states are known. */
    private Journal.Writer journal;
    private final Promise<MigrationStatus> result = Promise.promise();
    private final List<SectionSender> senders = new ArrayList<>();
    /** The devices' own connections, for channels 1 on (feature device-connections); empty otherwise. */
    private final List<DeviceLink> links = new ArrayList<>();
    private final Set<Integer> acked = new HashSet<>();
    private final Promise<JsonObject> accepted = Promise.promise();
    private final Promise<Void> loaded = Promise.promise();
    private final Promise<Void> started = Promise.promise();
    private final Promise<Void> converged = Promise.promise();
    private final Promise<Void> released = Promise.promise();
    private final BandwidthMeter meter = new BandwidthMeter();
    private final ProgressWatchdog watchdog;

    private StreamConnection connection;
    private FrameWriter writer;
    private FrameDecoder decoder;
    private boolean precopy;
    /** The destination takes DEV_INIT_DATA_SENT and acknowledges it (HELLO feature, QEMU's switchover-ack). */
    private boolean switchoverAck;
    private List<DeviceAtStart> starts = List.of();
    private SwitchoverPolicy policy;
    private int loadedCount;
    /** The destination holds the state (every LOADED arrived): from here on the migration completes. */
    private boolean committed;
    private long statusTimer = -1;
    private long convergenceTimer = -1;
    private long transferStart;
    private long precopyStart;
    private long downtimeStart;

    /**
     * @param devices the source devices, claimed for this migration; {@code request} names their targets
     */
    public SourceMigration(Vertx vertx, String agent, MigrationRecord record, List<DeviceHandle> devices,
            MigrationRequest request, Supplier<Future<StreamConnection>> connect, MigrationOptions options,
            MigrationEvents events, Journal journal) {
        this.vertx = vertx;
        this.journalStore = journal;
        this.agent = agent;
        this.record = record;
        this.devices = List.copyOf(devices);
        this.targets = request.devices().stream().map(MigrationRequest.DevicePair::targetDevice).toList();
        this.request = request;
        this.connect = connect;
        this.options = options;
        this.events = events;
        this.watchdog = new ProgressWatchdog(vertx, options.progressTimeoutMillis(),
                () -> (writer == null ? 0 : writer.bytesWritten()) + (decoder == null ? 0 : decoder.bytes())
                        + links.stream().mapToLong(DeviceLink::bytes).sum(),
                idle -> fail(new MigrationException(phase(), "no progress for " + idle + " ms in phase " + phase()
                        + ": the destination stopped reading or answering")));
    }

    /**
     * Starts the migration, registered in phase CONNECTING; the future completes when it completed, or fails once the
     * source devices are safe.
     */
    public Future<MigrationStatus> run() {
        watchdog.start();
        statusTimer = vertx.setPeriodic(STATUS_MILLIS, id -> sample());
        prepare()
                .compose(v -> connect.get())
                .compose(this::handshake)
                // On disk before any device leaves its state: a successor agent finds what to put back.
                .compose(v -> journal.record(phase(), false))
                .compose(v -> setup())
                .compose(v -> precopy())
                .compose(v -> switchover())
                .compose(v -> endSections())
                .compose(v -> loaded.future())
                // On disk before the commit: a successor agent must not run the source devices again.
                .compose(v -> journal.record(phase(), true))
                .compose(v -> commit())
                .compose(v -> startDestination())
                .onComplete(ar -> {
                    if (ar.succeeded()) {
                        complete(null);
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
        if (phase().isEnding()) {
            return "migration " + record.id() + " has already ended (" + ended() + ")";
        }
        if (committed) {
            return "migration " + record.id() + " has committed: the destination holds the state";
        }
        fail(MigrationException.cancelled(phase()));
        return null;
    }

    /**
     * Ends the migration because the agent stops, before its devices close: the source devices go back to RUNNING
     * unless the destination already holds the state. A no-op once the migration ended.
     */
    public void shutdown() {
        abort("agent " + agent + " is shutting down");
    }

    /** Fails the migration for {@code reason} (its peer left the cluster): the devices go back to RUNNING. */
    public void abort(String reason) {
        fail(new MigrationException(phase(), reason));
    }

    /**
     * Lets a manual switchover go on.
     *
     * @return null when released (now, or as soon as the migration is ready), else why it cannot be
     */
    public String release() {
        if (phase().isEnding()) {
            return "migration " + record.id() + " has already ended (" + ended() + ")";
        }
        if (!request.manualSwitchover() || !precopy) {
            return "migration " + record.id() + " switches over by itself: it is not a manual pre-copy migration";
        }
        released.tryComplete();
        return null;
    }

    private Phase phase() {
        return record.status().phase();
    }

    private String ended() {
        Outcome o = record.status().outcome();
        return o == Outcome.ACTIVE ? "it is being aborted" : o.name().toLowerCase();
    }

    /** The one transition: checks the arc, records the phase and publishes it. */
    private void enter(Phase next) {
        events.publish(record.update(s -> s.withPhase(s.phase().to(next))), Lifecycle.PHASE);
        if (journal != null) {
            journal.record(next, false);
        }
    }

    /** Removes the journal entry once the migration ended with its devices where they belong. */
    private void forget() {
        if (journal != null) {
            journal.forget();
        }
    }

    /**
     * Reads each device as it is now (QEMU's save_setup): its state decides whether it pre-copies and where a
     * rollback returns it, its MIG_DATA_SIZE sizes the reads and what the destination expects.
     */
    private Future<Void> prepare() {
        List<Future<DeviceAtStart>> read = new ArrayList<>();
        devices.forEach(d -> read.add(DeviceAtStart.read(d, cause("start"))));
        return Future.all(read).compose(all -> {
            starts = read.stream().map(Future::result).toList();
            journal = journalStore.writer(vertx, new Journal.Entry(record.id(), MigrationStatus.Role.SOURCE, agent,
                    request.destination().toString(), phase(), false, starts.stream()
                            .map(d -> new Journal.Device(d.device().name(), d.state().name())).toList(),
                    Instant.now()));
            for (DeviceAtStart d : starts) {
                if (d.refusal() != null) {
                    return Future.failedFuture(new MigrationException(phase(), d.refusal()));
                }
            }
            precopy = request.mode() == Mode.PRECOPY && starts.stream().anyMatch(DeviceAtStart::canPrecopy);
            long stateSize = starts.stream().mapToLong(d -> Math.max(0, d.dataSize())).sum();
            record.update(s -> s.withMode(precopy ? Mode.PRECOPY : Mode.STOP_COPY)
                    .withTransfer(s.transfer().withStateSize(stateSize)));
            return Future.succeededFuture();
        });
    }

    private Future<Void> handshake(StreamConnection conn) {
        connection = conn;
        writer = new FrameWriter(conn.output());
        decoder = new FrameDecoder(options.limits(), FrameDecoder.controlOnly(this::onControl));
        conn.input().exceptionHandler(this::fail);
        conn.input().handler(this::receive);
        conn.closeHandler(v -> fail(new MigrationException(phase(), "the connection to " + conn.peer() + " closed")));
        conn.shutdownHandler(v -> shutdown());
        enter(Phase.HANDSHAKE);
        Set<String> offer = new TreeSet<>();
        if (precopy) {
            offer.add(Hello.SWITCHOVER_ACK);
        }
        if (starts.size() > 1 && options.connectionPerDevice()) {
            offer.add(Hello.DEVICE_CONNECTIONS);
        }
        List<Hello.Device> entries = new ArrayList<>();
        for (int i = 0; i < starts.size(); i++) {
            entries.add(SectionSender.hello(i, starts.get(i), targets.get(i)));
        }
        Hello hello = new Hello(record.id(), agent, precopy ? Mode.PRECOPY : Mode.STOP_COPY, options.chunkSize(),
                false, offer, entries);
        writer.control(FrameType.HELLO, 0, hello.toJson());
        return accepted.future().compose(accept -> {
            String destinationAgent = accept.getString("agent");
            record.update(s -> s.withPeers(s.peers().withPeerAgent(destinationAgent)));
            Set<String> taken = Hello.features(accept);
            switchoverAck = precopy && taken.contains(Hello.SWITCHOVER_ACK);
            boolean ownConnections = offer.contains(Hello.DEVICE_CONNECTIONS)
                    && taken.contains(Hello.DEVICE_CONNECTIONS);
            return ownConnections ? joinChannels(accept.getString("joinToken", "")) : Future.succeededFuture();
        }).map(v -> {
            for (int i = 0; i < starts.size(); i++) {
                FrameWriter channelWriter = i == 0 || links.isEmpty() ? writer : links.get(i - 1).writer();
                senders.add(new SectionSender(vertx, starts.get(i), targets.get(i), channelWriter, i,
                        options.chunkSize()));
            }
            int connections = 1 + links.size();
            record.update(s -> s.withPeers(s.peers().withConnections(connections)));
            return null;
        });
    }

    /**
     * Opens a connection of its own for every device from the second on, in parallel, and joins each to the
     * migration with the destination's token; completes once every one is JOINED.
     */
    private Future<Void> joinChannels(String token) {
        List<Future<DeviceLink>> opening = new ArrayList<>();
        for (int i = 1; i < starts.size(); i++) {
            opening.add(DeviceLink.open(vertx, connect, options.limits(), record.id(), i, token, this::phase,
                    this::linkFailed).onSuccess(this::linkJoined));
        }
        return Future.all(opening).map(all -> {
            // In channel order, whatever order they joined in.
            links.sort(Comparator.comparingInt(DeviceLink::channel));
            return null;
        });
    }

    private void linkJoined(DeviceLink link) {
        if (phase().isEnding()) {
            // Joined after the migration failed (a sibling could not join): nothing will use it.
            link.close();
        } else {
            links.add(link);
        }
    }

    private void linkFailed(Throwable failure) {
        // Once committed, a device connection's end is no failure: the destination holds the state.
        if (!committed) {
            fail(failure);
        }
    }

    /** Device data bytes written on every connection. */
    private long dataBytesWritten() {
        return writer.dataBytesWritten() + links.stream().mapToLong(l -> l.writer().dataBytesWritten()).sum();
    }

    private Future<Void> each(Function<SectionSender, Future<Void>> step) {
        List<Future<Void>> all = new ArrayList<>();
        senders.forEach(s -> all.add(step.apply(s)));
        return Future.all(all).mapEmpty();
    }

    private Future<Void> setup() {
        enter(Phase.SETUP);
        transferStart = System.nanoTime();
        // The first window opens with the transfer, not with the first timer tick after it.
        meter.sample(transferStart, 0);
        return each(SectionSender::setup);
    }

    private Future<Void> precopy() {
        if (!precopy) {
            return Future.succeededFuture();
        }
        enter(Phase.PRECOPY);
        precopyStart = System.nanoTime();
        policy = new SwitchoverPolicy(request.downtimeLimitMillis(), request.precopyBudgetMillis());
        return each(s -> s.start().canPrecopy() ? s.startPrecopy(cause("pre-copy"), switchoverAck)
                : Future.succeededFuture())
                .compose(v -> {
                    convergenceTimer = vertx.setPeriodic(CONVERGENCE_CHECK_MILLIS, id -> checkConvergence());
                    return converged.future();
                })
                .compose(v -> {
                    if (!request.manualSwitchover()) {
                        return Future.succeededFuture();
                    }
                    enter(Phase.READY_FOR_SWITCHOVER);
                    events.publish(record.status(), Lifecycle.READY_FOR_SWITCHOVER);
                    return released.future();
                });
    }

    /**
     * P2P quiescing for all first, then STOP_COPY for all; completes when every device's data has been read. The
     * downtime starts with the first arc that leaves a running state (docs/PROTOCOL.md 2.5), after the pre-copy
     * reads still in flight returned: the devices run meanwhile, as QEMU's do until it stops the VM.
     */
    private Future<Void> switchover() {
        enter(Phase.SWITCHOVER);
        cancelConvergenceTimer();
        return each(SectionSender::hold)
                .compose(v -> {
                    downtimeStart = System.nanoTime();
                    return each(s -> s.quiesce(cause("switchover: P2P quiesced")));
                })
                .compose(v -> {
                    enter(Phase.STOP_COPY);
                    return each(s -> s.stopCopy(cause("stop-copy")));
                });
    }

    private Future<Void> endSections() {
        refreshTransfer();
        Future<Void> last = each(SectionSender::end);
        enter(Phase.LOADING);
        return last.onSuccess(v -> {
            long now = System.nanoTime();
            record.update(s -> s.withTiming(new Timing(-1, now - downtimeStart, now - transferStart)));
        });
    }

    private Future<Void> commit() {
        long downtime = System.nanoTime() - downtimeStart;
        record.update(s -> s.withTiming(new Timing(downtime, s.timing().stopCopyNanos(), s.timing().transferNanos())));
        committed = true;
        devices.forEach(d -> d.stateMovedBy(record.id()));
        events.publish(record.status(), Lifecycle.COMMITTED);
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
        enter(Phase.STARTING);
        writer.control(FrameType.START, 0, new JsonObject());
        return started.future();
    }

    private void receive(Buffer data) {
        try {
            decoder.feed(data);
        } catch (ProtocolException | MigrationException e) {
            fail(e);
        }
    }

    private void onControl(FrameType type, int channel, JsonObject body) {
        switch (type) {
            case ACCEPT -> accepted.tryComplete(body);
            case SWITCHOVER_ACK -> acked.add(channel);
            case LOADED -> {
                if (++loadedCount == devices.size()) {
                    loaded.tryComplete();
                }
            }
            case STARTED -> started.tryComplete();
            case REFUSE -> fail(MigrationException.fromPeer(phase(), "the destination refused the migration: "
                    + body.getString("reason", "no reason given")));
            case ABORT -> fail(MigrationException.fromPeer(phase(), "the destination aborted the migration: "
                    + body.getString("reason", "no reason given")));
            default -> throw new ProtocolException("unexpected " + type + " frame from the destination in phase "
                    + phase());
        }
    }

    private String cause(String what) {
        return "migration " + record.id() + ": " + what;
    }

    /** Every 100 ms, and every 10 ms in pre-copy: the bandwidth and the transfer figures. */
    private void sample() {
        if (writer != null) {
            meter.sample(System.nanoTime(), dataBytesWritten());
            refreshTransfer();
        }
    }

    private void refreshTransfer() {
        long pre = 0;
        long stop = 0;
        long iterations = 0;
        long remaining = 0;
        Map<String, DeviceBytes> perDevice = new HashMap<>();
        for (SectionSender s : senders) {
            pre += s.precopyBytes();
            stop += s.stopCopyBytes();
            iterations += s.iterations();
            remaining += s.remainingEstimate();
            perDevice.put(s.device().name(), new DeviceBytes(s.precopyBytes(), s.stopCopyBytes()));
        }
        long sent = pre + stop;
        long estimate = remaining;
        long its = iterations;
        long preBytes = pre;
        long stopBytes = stop;
        long bandwidth = (long) meter.estimate().bytesPerSecond();
        record.update(s -> {
            boolean running = s.phase() == Phase.PRECOPY || s.phase() == Phase.READY_FOR_SWITCHOVER;
            Transfer t = s.transfer();
            long left = running ? estimate : Math.max(0, t.stateSize() - sent);
            return s.withTransfer(new Transfer(t.stateSize(), Math.max(t.dataBytes(), sent), preBytes, stopBytes, its,
                    left, bandwidth, perDevice));
        });
    }

    /** Every 10 ms in pre-copy: measure the bandwidth, decide whether to switch over. */
    private void checkConvergence() {
        long now = System.nanoTime();
        sample();
        if (converged.future().isComplete()) {
            return;
        }
        boolean initialOut = true;
        boolean acknowledged = true;
        long remaining = 0;
        for (SectionSender s : senders) {
            remaining += s.remainingEstimate();
            if (s.start().canPrecopy()) {
                initialOut &= s.initialDataSent();
                acknowledged &= !switchoverAck || acked.contains(s.channel());
            }
        }
        SwitchoverPolicy.Decision decision = policy.decide(new SwitchoverPolicy.Progress(remaining, meter.estimate(),
                initialOut, acknowledged, record.status().transfer().iterations(), (now - precopyStart) / 1_000_000));
        if (decision.switchOver()) {
            record.update(s -> s.withSwitchoverReason(decision.reason()));
            converged.tryComplete();
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
        watchdog.stop();
        if (statusTimer >= 0) {
            vertx.cancelTimer(statusTimer);
            statusTimer = -1;
        }
    }

    private void releaseDevices() {
        devices.forEach(d -> d.release(record.id()));
    }

    /** Completed: the destination holds the state; {@code warning} says what went wrong after the commit, if anything. */
    private void complete(String warning) {
        if (phase().isEnding()) {
            return;
        }
        stopTimers();
        meter.finish(System.nanoTime(), dataBytesWritten());
        refreshTransfer();
        connection.close();
        links.forEach(DeviceLink::close);
        releaseDevices();
        Boolean destinationStarted = options.startDestination() ? warning == null : null;
        MigrationStatus done = record.update(s -> s.end(Outcome.COMPLETED, null, null, DeviceState.STOP.name(),
                destinationStarted, warning));
        events.publish(done, Lifecycle.COMPLETED, warning == null ? new JsonObject()
                : new JsonObject().put("warning", warning));
        forget();
        result.complete(done);
    }

    /** Our own errors say what they mean; anything else came from the network and is placed in context. */
    private String describe(Throwable cause) {
        String message = cause.getMessage() == null ? cause.getClass().getSimpleName() : cause.getMessage();
        if (cause instanceof MigrationException || cause instanceof VfioException
                || cause instanceof ProtocolException) {
            return message;
        }
        if (connection == null) {
            return "cannot connect to the destination " + record.status().peers().peer() + ": " + message;
        }
        return "the connection to " + connection.peer() + " failed in phase " + phase() + ": " + message;
    }

    private void fail(Throwable cause) {
        if (phase().isEnding()) {
            return;
        }
        String reason = describe(cause);
        if (committed) {
            // The destination holds the state: the migration completed, only the confirmation of its start is missing.
            complete("the destination did not confirm that its devices run: " + reason);
            return;
        }
        stopTimers();
        Phase failedIn = cause instanceof MigrationException m ? m.phase() : phase();
        enter(Phase.ABORTING);
        List.of(accepted, loaded, started, converged, released).forEach(p -> p.tryFail(cause));
        senders.forEach(SectionSender::close);
        if (connection != null) {
            if (cause instanceof MigrationException m && m.isFromPeer()) {
                connection.close();
                links.forEach(DeviceLink::close);
            } else {
                writer.control(FrameType.ABORT, 0, new JsonObject().put("reason", reason));
                connection.lingerAndClose(vertx, ABORT_LINGER_MILLIS);
                links.forEach(l -> l.abort(vertx, reason, ABORT_LINGER_MILLIS));
            }
        }
        DeviceSafety.restore(starts, cause("rollback: " + reason)).onComplete(ar -> {
            refreshTransfer();
            releaseDevices();
            boolean cancelled = cause instanceof MigrationException m && m.isCancelled();
            // Devices not read before the failure were never touched: they stay as they were.
            String deviceState = starts.isEmpty() ? "unchanged" : ar.result();
            MigrationStatus done = record.update(s -> s.end(cancelled ? Outcome.CANCELLED : Outcome.FAILED, failedIn,
                    reason, deviceState, null, null));
            events.publish(done, cancelled ? Lifecycle.CANCELLED : Lifecycle.FAILED);
            forget();
            result.fail(cause instanceof MigrationException ? cause : new MigrationException(failedIn, reason, cause));
        });
    }
}
