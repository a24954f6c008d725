package io.vfioproxy.migration;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DevicePolicy;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.migration.MigrationEvents.Lifecycle;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.migration.MigrationStatus.DeviceBytes;
import io.vfioproxy.migration.MigrationStatus.Outcome;
import io.vfioproxy.migration.MigrationStatus.Peers;
import io.vfioproxy.migration.MigrationStatus.Role;
import io.vfioproxy.migration.MigrationStatus.Transfer;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.uapi.DeviceState;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Function;

/**
 * The destination side of one connection: checks the HELLO, moves each named device to RESUMING, loads the device
 * sections as they arrive ({@link SectionLoader}), tells the source LOADED per device, and runs the devices on
 * START. Phases: HANDSHAKE, RESUMING, LOADED, STARTING, COMPLETED; on failure ABORTING, FAILED.
 *
 * <p>Backpressure: the connection is piped into this session; while the devices lag, the pipe pauses the socket,
 * TCP's window closes and the source stops reading its device. With the feature {@code device-connections} every
 * device but the first has a connection of its own ({@link JoinedChannel}), loaded on that connection's event loop,
 * so a slow device pauses its own connection only; control stays on this one.
 *
 * <p>START runs the devices in P2P order: every device to RUNNING_P2P before any goes to RUNNING.
 *
 * <p>Any failure before LOADED resets every device the session moved (the only way out of RESUMING) and tells the
 * source why; so does an ABORT from the source after LOADED (it did not commit). A connection lost after LOADED
 * leaves the devices in STOP with the migrated state: the source may have committed, so that state is kept, but it
 * is not run.
 */
public final class DestinationSession {

    /** After ABORT, how long the connection stays open, read and discarded, so the source can read the reason. */
    static final long ABORT_LINGER_MILLIS = 2000;
    private static final long STATUS_MILLIS = 100;

    private final Vertx vertx;
    private final String agent;
    private final StreamConnection connection;
    private final DeviceRegistry devices;
    private final MigrationOptions options;
    private final MigrationEvents events;
    private final Function<MigrationStatus, MigrationRecord> register;
    private final List<DeviceHandle> claimed = new ArrayList<>();
    /** The devices this session asked to enter RESUMING: the ones a failure resets. */
    private final List<DeviceHandle> moved = new ArrayList<>();
    private final FrameWriter writer;
    private final FrameDecoder decoder;
    private final ProgressWatchdog watchdog;
    /** Completes once the session ended and its devices are in their final state. */
    private final Promise<Void> settled = Promise.promise();
    /** The sections that arrive on this connection: every device's, or the first device's alone. */
    private SectionLoader loader;
    /** The target devices in the HELLO's order. */
    private final List<DeviceHandle> targets = new ArrayList<>();
    /** Channels whose own connection has not joined yet (feature device-connections), with their devices. */
    private final Map<Integer, DeviceHandle> awaiting = new TreeMap<>();
    /** Channels on connections of their own. */
    private final Map<Integer, JoinedChannel> joined = new TreeMap<>();
    private final Set<Integer> loadedChannels = new HashSet<>();
    private final SectionLoader.Events loadedEvents = new Loaded();
    /** What a device connection's JOIN must present; null without the feature. */
    private String joinToken;
    private boolean switchoverAck;
    private DecodingSink sink;
    private MigrationRecord record;
    private final Journal journalStore;
    /** This migration's entries in the node's journal, once its devices are known. */
    private Journal.Writer journal;
    private Phase phase = Phase.HANDSHAKE;
    private long statusTimer = -1;
    private long handshakeTimer = -1;
    private Context context;

    /**
     * @param register registers the record of the migration a HELLO names; null when this agent already runs one
     *        with that id
     */
    public DestinationSession(Vertx vertx, String agent, StreamConnection connection, DeviceRegistry devices,
            MigrationOptions options, MigrationEvents events, Journal journal,
            Function<MigrationStatus, MigrationRecord> register) {
        this.journalStore = journal;
        this.vertx = vertx;
        this.agent = agent;
        this.connection = connection;
        this.devices = devices;
        this.options = options;
        this.events = events;
        this.register = register;
        this.writer = new FrameWriter(connection.output());
        this.decoder = new FrameDecoder(options.limits(), SectionLoader.listener(this::sections, this::onControl));
        this.watchdog = new ProgressWatchdog(vertx, options.progressTimeoutMillis(),
                () -> decoder.bytes() + (loader == null ? 0 : loader.written())
                        + joined.values().stream().mapToLong(c -> c.bytes() + c.written()).sum(),
                idle -> fail(new MigrationException(phase, "nothing arrived from " + connection.peer() + " for " + idle
                        + " ms in phase " + phase)));
    }

    /** Starts serving the connection. */
    public void start() {
        context = vertx.getOrCreateContext();
        // A peer that opens a connection and never completes its HELLO holds an fd and a buffer: not for long.
        handshakeTimer = vertx.setTimer(options.handshakeTimeoutMillis(), id -> {
            if (phase == Phase.HANDSHAKE && record == null) {
                fail(MigrationException.fromPeer(phase, "no HELLO from " + connection.peer() + " within "
                        + options.handshakeTimeoutMillis() + " ms (stream.handshakeTimeoutMillis)"));
            }
        });
        watchdog.start();
        statusTimer = vertx.setPeriodic(STATUS_MILLIS, id -> refreshTransfer());
        connection.closeHandler(v -> connectionEnded());
        connection.shutdownHandler(v -> {
            if (phase.isEnding()) {
                connection.close();
            } else {
                fail(new MigrationException(phase, "agent " + agent + " is shutting down"));
            }
        });
        sink = new DecodingSink(decoder, () -> loader, e -> fail(new MigrationException(phase,
                "protocol error from " + connection.peer() + ": " + e.getMessage(), e)));
        connection.input().pipe().endOnSuccess(false).endOnFailure(false).to(sink).onComplete(ar -> {
            if (ar.failed()) {
                fail(new MigrationException(phase, "reading from " + connection.peer() + " failed: "
                        + ar.cause().getMessage(), ar.cause()));
            } else {
                connectionEnded();
            }
        });
    }

    /** The one transition: checks the arc, and records and publishes it once a record exists. */
    private void enter(Phase next) {
        phase = phase.to(next);
        if (record != null) {
            events.publish(record.update(s -> s.withPhase(next)), Lifecycle.PHASE);
        }
        // LOADED and STARTING are written where they are reached, and awaited before the next risky step.
        if (journal != null && next != Phase.LOADED && next != Phase.STARTING) {
            journal.record(next, false);
        }
    }

    /** Removes the journal entry once the session ended with its devices in their final state. */
    private void forget() {
        if (journal != null) {
            journal.forget();
        }
    }

    private void connectionEnded() {
        if (phase.isEnding()) {
            return;
        }
        String where = decoder.midFrame() ? "truncated stream: the connection closed " + decoder.position()
                : "the connection closed " + decoder.position();
        fail(MigrationException.fromPeer(phase, where + " in phase " + phase));
    }

    private boolean registerRecord(String id, Mode mode) {
        record = register.apply(MigrationStatus.begin(id, Role.DESTINATION, agent, mode, Phase.HANDSHAKE));
        return record != null;
    }

    private void hello(JsonObject json) {
        Hello hello;
        try {
            hello = Hello.parse(json, options.limits());
        } catch (Hello.Invalid invalid) {
            String id = Hello.migrationId(json);
            if (id != null) {
                registerRecord(id, Mode.STOP_COPY);
            }
            refuse(invalid.getMessage());
            return;
        }
        if (!registerRecord(hello.migration(), hello.mode())) {
            refuse("agent " + agent + " cannot take migration " + hello.migration() + ": it runs one with that id, "
                    + "or " + options.maxConcurrent() + " migrations already (migration.maxConcurrent)");
            return;
        }
        // Of what the source offers, this agent takes what it knows.
        Set<String> features = new TreeSet<>(hello.features());
        features.retainAll(Hello.KNOWN_FEATURES);
        if (hello.devices().size() < 2) {
            features.remove(Hello.DEVICE_CONNECTIONS);
        }
        switchoverAck = features.contains(Hello.SWITCHOVER_ACK);
        loader = new SectionLoader("migration " + hello.migration(), switchoverAck,
                options.deviceWriteQueueBytes(), loadedEvents);
        loader.retainInput(connection::retainInput);
        List<String> sources = new ArrayList<>();
        for (Hello.Device d : hello.devices()) {
            DeviceHandle local = devices.find(d.targetDevice());
            if (local == null) {
                refuse("agent " + agent + " has no device named '" + d.targetDevice() + "'");
                return;
            }
            if (!local.claim(hello.migration())) {
                refuse("device " + d.targetDevice() + " is busy with migration " + local.owner());
                return;
            }
            claimed.add(local);
            String incompatible = Compatibility.check(local, d.sourceDevice(), d.identity());
            if (incompatible != null) {
                refuse(incompatible);
                return;
            }
            targets.add(local);
            if (features.contains(Hello.DEVICE_CONNECTIONS) && d != hello.devices().get(0)) {
                awaiting.put(d.channel(), local);
            } else {
                loader.open(d.channel(), local);
            }
            sources.add(d.sourceDevice());
        }
        if (!awaiting.isEmpty()) {
            byte[] token = new byte[16];
            new SecureRandom().nextBytes(token);
            joinToken = Base64.getUrlEncoder().withoutPadding().encodeToString(token);
        }
        // What will arrive: the source's sizes, as its devices reported them when the migration started.
        long stateSize = hello.devices().stream().mapToLong(d -> Math.max(0, d.identity().stateSize())).sum();
        MigrationStatus status = record.update(s -> s.withPeers(new Peers(
                targets.stream().map(DeviceHandle::name).toList(), sources, connection.peer(),
                hello.sourceAgent(), 1 + awaiting.size()))
                .withTransfer(s.transfer().withStateSize(stateSize)));
        events.publish(status, Lifecycle.STARTED);
        journal = journalStore.writer(vertx, new Journal.Entry(record.id(), Role.DESTINATION, agent,
                connection.peer(), Phase.RESUMING, false, targets.stream()
                        .map(d -> new Journal.Device(d.name(), null)).toList(), Instant.now()));
        moved.addAll(targets);
        // On disk before any device enters RESUMING: a successor agent finds what to reset.
        journal.record(Phase.RESUMING, false).compose(v -> {
            if (phase.isEnding()) {
                // Failed (an ABORT, a cut) while the entry was written: no device may enter RESUMING now, after the
                // failure reset what it had moved.
                return Future.failedFuture("the migration ended before its devices entered RESUMING");
            }
            List<Future<Void>> resuming = new ArrayList<>();
            for (DeviceHandle dev : targets) {
                resuming.add(dev.submit(dc -> {
                    dc.setState(DeviceState.RESUMING, dc.state(), cause("resuming"));
                    return null;
                }));
            }
            return Future.all(resuming);
        }).onComplete(ar -> {
            if (phase.isEnding()) {
                return;
            }
            if (ar.failed()) {
                // Devices that did reach RESUMING are reset by fail(); the others recovered their state.
                refuse("a device could not enter RESUMING: " + ar.cause().getMessage());
                return;
            }
            enter(Phase.RESUMING);
            JsonArray accepted = new JsonArray();
            hello.devices().forEach(d -> accepted.add(new JsonObject().put("channel", d.channel())));
            JsonObject accept = new JsonObject().put("protocol", Frames.PROTOCOL_VERSION)
                    .put("agent", agent).put("features", new JsonArray(List.copyOf(features)))
                    .put("devices", accepted);
            if (joinToken != null) {
                accept.put("joinToken", joinToken);
            }
            writer.control(FrameType.ACCEPT, 0, accept);
        });
    }

    private void refuse(String reason) {
        if (phase.isEnding()) {
            return;
        }
        writer.control(FrameType.REFUSE, 0, new JsonObject().put("reason", reason));
        fail(MigrationException.fromPeer(phase, "refused: " + reason));
    }

    /** What the loader reports: LOADED per device, or the failure. */
    private final class Loaded implements SectionLoader.Events {
        @Override
        public void loaded(int channel, DeviceHandle device, long dataBytes) {
            if (phase.isEnding()) {
                return;
            }
            refreshTransfer();
            loadedChannels.add(channel);
            if (loadedChannels.size() < targets.size()) {
                writer.control(FrameType.LOADED, channel, new JsonObject().put("device", device.name())
                        .put("dataBytes", dataBytes));
                return;
            }
            // On disk before the last LOADED lets the source commit: a successor agent keeps the state.
            journal.record(Phase.LOADED, true).onComplete(ar -> {
                if (phase.isEnding()) {
                    return;
                }
                if (ar.failed()) {
                    fail(new MigrationException(phase, "the journal cannot record the loaded state: "
                            + ar.cause().getMessage(), ar.cause()));
                    return;
                }
                writer.control(FrameType.LOADED, channel, new JsonObject().put("device", device.name())
                        .put("dataBytes", dataBytes));
                enter(Phase.LOADED);
            });
        }

        @Override
        public void failed(Throwable cause) {
            fail(cause instanceof MigrationException ? cause
                    : new MigrationException(phase, cause.getMessage(), cause));
        }

        @Override
        public void initialDataLoaded(int channel) {
            if (!phase.isEnding()) {
                writer.control(FrameType.SWITCHOVER_ACK, channel, new JsonObject());
            }
        }
    }

    /**
     * Runs the devices whose policy says so, every one to RUNNING_P2P before any runs, so none sends P2P DMA to a
     * peer that is not ready. The others (PCI functions, by default) stay in STOP with the loaded state: only their
     * consumer can set up their DMA mappings and interrupts.
     */
    private Future<Void> startInOrder() {
        List<DeviceHandle> run = targets.stream()
                .filter(d -> d.policy().endState() == DeviceState.RUNNING).toList();
        List<Future<Void>> quiesced = new ArrayList<>();
        for (DeviceHandle d : run) {
            if (d.flags().p2p()) {
                quiesced.add(d.setState(DeviceState.RUNNING_P2P, DeviceState.ERROR, cause("start: P2P quiesced")));
            }
        }
        return Future.all(quiesced).compose(v -> {
            List<Future<Void>> running = new ArrayList<>();
            for (DeviceHandle d : run) {
                running.add(d.setState(DeviceState.RUNNING, DeviceState.ERROR, cause("start after migration")));
            }
            return Future.all(running);
        }).mapEmpty();
    }

    private void startDevices() {
        enter(Phase.STARTING);
        // On disk before any device leaves STOP: a successor agent finishes the start instead of holding a device
        // found half-way (RUNNING_P2P) as if START had never come.
        Future<Void> recorded = journal == null ? Future.succeededFuture() : journal.record(Phase.STARTING, true);
        recorded.compose(v -> startInOrder()).onComplete(ar -> {
            if (phase.isEnding()) {
                return;
            }
            if (ar.failed()) {
                fail(new MigrationException(Phase.STARTING, "a device failed to start: " + ar.cause().getMessage()));
                return;
            }
            JsonObject ends = new JsonObject();
            targets.forEach(d -> ends.put(d.name(), d.policy().endState().name()));
            // The source reads STARTED before it sees the connection end.
            writer.control(FrameType.STARTED, 0, new JsonObject().put("devices",
                    new JsonArray(targets.stream().map(DeviceHandle::name).toList())).put("endStates", ends))
                    .onComplete(v -> connection.close());
            joined.values().forEach(JoinedChannel::finish);
            stop();
            release();
            refreshTransfer();
            // Completed from here: the connection's end is no failure any more; the record ends once handed back.
            phase = phase.to(Phase.COMPLETED);
            handBack().onComplete(handed -> {
                String states = String.join(",", targets.stream()
                        .map(d -> d.policy().endState().name()).toList());
                events.publish(record.update(s -> s.end(Outcome.COMPLETED, null, null, states, null,
                        handed.result())), Lifecycle.COMPLETED);
                forget();
                settled.tryComplete();
            });
        });
    }

    /**
     * The devices left in STOP are held for their consumer: handed to it at once where their policy names its
     * socket, else kept open (closing a PCI function would reset it) until released through the API.
     *
     * @return never fails: null, or a warning naming each device whose hand-back failed (it is held instead)
     */
    private Future<String> handBack() {
        List<Future<String>> failures = new ArrayList<>();
        for (DeviceHandle d : targets) {
            DevicePolicy policy = d.policy();
            if (policy.endState() == DeviceState.RUNNING) {
                continue;
            }
            d.holdFor(record.id());
            if (policy.handback() != null) {
                failures.add(d.handOver(policy.handback()).map(v -> (String) null).recover(e -> Future.succeededFuture(
                        "device " + d.name() + " could not be handed to " + policy.handback() + " (" + e.getMessage()
                                + "); it holds the migrated state in STOP until released")));
            }
        }
        return Future.join(failures).map(v -> {
            List<String> warnings = failures.stream().map(Future::result).filter(w -> w != null).toList();
            return warnings.isEmpty() ? null : String.join("; ", warnings);
        });
    }

    private String cause(String what) {
        return "migration " + (record == null ? "?" : record.id()) + ": " + what;
    }

    private void refreshTransfer() {
        if (record == null || loader == null) {
            return;
        }
        boolean precopy = record.status().mode() == Mode.PRECOPY;
        Map<String, DeviceBytes> perDevice = new HashMap<>();
        targets.forEach(d -> perDevice.put(d.name(), loader.deviceBytes(d, precopy)));
        long iterations = loader.iterations();
        // A device on a connection of its own: what arrived there.
        for (JoinedChannel c : joined.values()) {
            perDevice.put(c.device().name(), c.deviceBytes(precopy));
            iterations += c.iterations();
        }
        long pre = perDevice.values().stream().mapToLong(DeviceBytes::precopy).sum();
        long stop = perDevice.values().stream().mapToLong(DeviceBytes::stopCopy).sum();
        long its = iterations;
        record.update(s -> {
            Transfer t = s.transfer();
            long data = pre + stop;
            return s.withTransfer(new Transfer(t.stateSize(), data, pre, stop, its, Math.max(0, t.stateSize() - data),
                    0, perDevice));
        });
    }

    private void stop() {
        vertx.cancelTimer(handshakeTimer);
        watchdog.stop();
        if (statusTimer >= 0) {
            vertx.cancelTimer(statusTimer);
            statusTimer = -1;
        }
        sink.stop();
    }

    private void release() {
        if (record != null) {
            claimed.forEach(d -> d.release(record.id()));
        }
    }

    private void fail(Throwable cause) {
        if (phase.isEnding()) {
            return;
        }
        Phase failedIn = phase;
        enter(Phase.ABORTING);
        stop();
        String reason = cause.getMessage() == null ? cause.toString() : cause.getMessage();
        if (loader != null) {
            loader.abort();
        }
        joined.values().forEach(JoinedChannel::abort);
        awaiting.clear();
        if (cause instanceof SourceAbort || cause instanceof MigrationException m && m.isFromPeer()) {
            connection.close();
        } else {
            abortAndLinger(reason);
        }
        // A connection lost after LOADED leaves the source's decision unknown: keep the state. An ABORT from the
        // source says it did not commit: reset.
        boolean keepLoaded = (failedIn == Phase.LOADED || failedIn == Phase.STARTING) && !(cause instanceof SourceAbort);
        List<Future<DeviceState>> safe = new ArrayList<>();
        for (DeviceHandle d : moved) {
            if (keepLoaded && record != null) {
                // Kept for whoever decides: its consumer takes it (release with a handback) or it is discarded.
                d.holdFor(record.id());
            }
            safe.add(keepLoaded ? d.state() : DeviceSafety.reset(d, cause("abort after failure: " + reason)));
        }
        Future.join(safe).onComplete(ar -> {
            refreshTransfer();
            release();
            phase = phase.to(Phase.FAILED);
            if (record != null) {
                String note = keepLoaded ? "; the device keeps the migrated state in STOP and does not run" : "";
                events.publish(record.update(s -> s.end(Outcome.FAILED, failedIn, reason + note,
                        DeviceSafety.describe(safe), null, null)), Lifecycle.FAILED);
            }
            forget();
            settled.tryComplete();
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
        return abort("agent " + agent + " is shutting down");
    }

    /** Fails the session for {@code reason}: its devices are reset (or keep a loaded state); completes once settled. */
    public Future<Void> abort(String reason) {
        context.runOnContext(v -> fail(new MigrationException(phase, reason)));
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
            case SECTION_END -> sections().sectionEnd(channel, body);
            case ABORT -> fail(new SourceAbort("the source aborted the migration: "
                    + body.getString("reason", "no reason given")));
            default -> throw new ProtocolException("unexpected " + type + " frame from the source");
        }
    }

    /**
     * A device connection's JOIN for {@code channel} (from that connection's context): attached when it names a
     * channel still waiting for its connection and presents this migration's token, else refused.
     */
    void join(JoinedChannel channelConnection, int channel, String token) {
        context.runOnContext(v -> {
            if (phase != Phase.RESUMING || joinToken == null || !MessageDigest.isEqual(
                    joinToken.getBytes(StandardCharsets.UTF_8), token.getBytes(StandardCharsets.UTF_8))) {
                channelConnection.refuse("migration " + record.id() + " on agent " + agent + " takes no device "
                        + "connection for channel " + channel + " (phase " + phase + ", or a wrong token)");
                return;
            }
            DeviceHandle device = awaiting.remove(channel);
            if (device == null) {
                channelConnection.refuse("channel " + channel + " of migration " + record.id()
                        + " is not waiting for a connection: it is not one, or it joined already");
                return;
            }
            joined.put(channel, channelConnection);
            channelConnection.attach(device, switchoverAck, "migration " + record.id(), onThisContext(loadedEvents));
        });
    }

    /** A device connection closed before its device loaded (from that connection's context). */
    void channelLost(int channel, String how) {
        context.runOnContext(v -> fail(MigrationException.fromPeer(phase, "channel " + channel + " from "
                + connection.peer() + ": " + how + " in phase " + phase)));
    }

    /** A device connection broke the protocol (from that connection's context). */
    void channelFailed(int channel, String problem) {
        context.runOnContext(v -> fail(new MigrationException(phase, "protocol error from " + connection.peer()
                + " on channel " + channel + ": " + problem)));
    }

    /** The source's ABORT on a device connection (from that connection's context). */
    void sourceAborted(String reason) {
        context.runOnContext(v -> fail(new SourceAbort("the source aborted the migration: " + reason)));
    }

    /** A joined channel's loader runs on its connection's context: what it reports is handled on this one. */
    private SectionLoader.Events onThisContext(SectionLoader.Events events) {
        return new SectionLoader.Events() {
            @Override
            public void loaded(int channel, DeviceHandle device, long dataBytes) {
                context.runOnContext(v -> events.loaded(channel, device, dataBytes));
            }

            @Override
            public void failed(Throwable cause) {
                context.runOnContext(v -> events.failed(cause));
            }

            @Override
            public void initialDataLoaded(int channel) {
                context.runOnContext(v -> events.initialDataLoaded(channel));
            }
        };
    }

    /** The loader, where SECTION frames may come: after ACCEPT, before the devices loaded. */
    private SectionLoader sections() {
        if (phase != Phase.RESUMING) {
            throw new ProtocolException("SECTION frame in phase " + phase);
        }
        return loader;
    }
}
