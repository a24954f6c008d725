package io.vfioproxy.relay;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.stream.StreamConnector;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Consumer;
import java.util.regex.Pattern;

/**
 * Relay mode: the agent carries a hypervisor's own migration stream between nodes, as KubeVirt's node agent
 * proxies QEMU's connections, but framed, integrity-checked, backpressured end to end and observed. A source agent
 * starts a relay ({@link #start}) and listens for the source hypervisor; the destination agent gets each channel
 * as an agent connection ({@link #accept}) and connects it to the target, if its configuration allows that
 * target. Relays are published as events ({@code event}: started, phase, progress, completed, failed,
 * cancelled) and counted.
 */
public final class RelayService {

    private static final System.Logger LOG = System.getLogger("io.vfioproxy.relay");
    private static final Pattern ID = Pattern.compile("[A-Za-z0-9._-]{1,128}");
    private static final long PROGRESS_MILLIS = 500;
    /** Ended relays kept for the API, the oldest dropped first. */
    private static final int RETAINED = 100;

    /** A request the service refuses, with the HTTP status that says why (400, 404, 409). */
    public static final class Rejected extends RuntimeException {
        private final int status;

        public Rejected(int status, String message) {
            super(message);
            this.status = status;
        }

        public int status() {
            return status;
        }
    }

    /** What a relay tells the service as it goes. */
    interface Ending {
        void changed(RelayStatus status, String event);

        void ended(RelayStatus status);
    }

    private final Vertx vertx;
    private final String agent;
    private final StreamConnector connector;
    private final RelayOptions options;
    private final Limits limits;
    private final RelayMetrics metrics;
    private final Consumer<JsonObject> sink;
    private final NetClient targets;
    private final Map<String, RelayRecord> records = new LinkedHashMap<>();
    private final Map<String, SourceRelay> sources = new HashMap<>();
    private final Map<String, TargetRelay> destinations = new HashMap<>();
    private final Map<String, RelayStatus> counted = new HashMap<>();
    private final Ending ending = new Events();
    private final long progressTimer;

    /** @param sink where each relay event goes (the agent publishes it on the event bus) */
    public RelayService(Vertx vertx, String agent, StreamConnector connector, RelayOptions options, Limits limits,
            RelayMetrics metrics, Consumer<JsonObject> sink) {
        this.vertx = vertx;
        this.agent = agent;
        this.connector = connector;
        this.options = options;
        this.limits = limits;
        this.metrics = metrics;
        this.sink = sink;
        this.targets = vertx.createNetClient(new NetClientOptions().setTcpNoDelay(true).setReceiveBufferSize(4 << 20).setSendBufferSize(4 << 20)
                .setConnectTimeout((int) Math.min(Integer.MAX_VALUE, options.openTimeoutMillis())));
        this.progressTimer = vertx.setPeriodic(PROGRESS_MILLIS, id -> progress());
    }

    /** Starts a relay; completes once it listens, with the record naming the address to give the hypervisor. */
    public Future<RelayRecord> start(RelayRequest request) {
        String id = "r-" + UUID.randomUUID();
        RelayRecord record = new RelayRecord(RelayStatus.begin(id, "source", agent, request.destination().toString(),
                request.target().toString(), null, RelayPhase.LISTENING));
        SourceRelay relay = new SourceRelay(vertx, agent, request, options, limits, connector, record, ending);
        return relay.start().transform(ar -> {
            if (ar.failed()) {
                return Future.failedFuture(ar.cause() instanceof IllegalArgumentException
                        ? new Rejected(400, ar.cause().getMessage()) : ar.cause());
            }
            synchronized (this) {
                records.put(id, record);
                sources.put(id, relay);
            }
            metrics.relayStarted("source");
            publish(record.status(), "started");
            return Future.succeededFuture(record);
        });
    }

    /** The relay with this id, or null. */
    public synchronized RelayRecord find(String id) {
        return records.get(id);
    }

    /** Every relay this agent knows, oldest first. */
    public synchronized List<RelayRecord> all() {
        return List.copyOf(records.values());
    }

    /** Cancels a source relay: its channels close, the hypervisor's migration fails, its VM keeps running. */
    public Future<RelayRecord> cancel(String id) {
        SourceRelay relay;
        RelayRecord record;
        synchronized (this) {
            relay = sources.get(id);
            record = records.get(id);
        }
        if (record == null) {
            return Future.failedFuture(new Rejected(404, "no relay '" + id + "' on agent " + agent));
        }
        if (record.status().role().equals("destination")) {
            return Future.failedFuture(new Rejected(409, "relay " + id + " is a destination here: cancel it on its "
                    + "source agent"));
        }
        if (relay == null || record.status().phase().isTerminal()) {
            return Future.failedFuture(new Rejected(409, "relay " + id + " has ended: "
                    + record.status().phase().name().toLowerCase()));
        }
        relay.cancel("cancelled through the API of agent " + agent);
        return Future.succeededFuture(record);
    }

    /** A connection from a source agent whose first frame is RELAY_OPEN. */
    public void accept(StreamConnection connection) {
        DelegatingListener listener = new DelegatingListener();
        RelayChannel[] channel = new RelayChannel[1];
        channel[0] = new RelayChannel(vertx, -1, connection, limits, (type, body) -> {
            if (type != FrameType.RELAY_OPEN) {
                throw new ProtocolException(type + " where RELAY_OPEN opens a relay channel");
            }
            open(channel[0], body, listener);
        }, listener);
        channel[0].start();
        vertx.setTimer(options.openTimeoutMillis(), id -> {
            if (listener.delegate == null && !channel[0].isDone()) {
                channel[0].fail("no RELAY_OPEN within " + options.openTimeoutMillis() + " ms", false);
            }
        });
    }

    private void open(RelayChannel channel, JsonObject body, DelegatingListener listener) {
        int protocol = body.getInteger("protocol", -1);
        if (protocol != Frames.PROTOCOL_VERSION) {
            channel.refuse("agent " + agent + " speaks protocol " + Frames.PROTOCOL_VERSION + ", not " + protocol);
            return;
        }
        String id = body.getString("relay", "");
        if (!ID.matcher(id).matches()) {
            channel.refuse("relay id '" + id + "' is not 1 to 128 letters, digits, '.', '_' or '-'");
            return;
        }
        int index = body.getInteger("channel", -1);
        if (index < 0 || index >= options.maxChannels()) {
            channel.refuse("channel " + index + " is out of range: agent " + agent + " takes at most "
                    + options.maxChannels());
            return;
        }
        RelayAddress target;
        try {
            target = RelayAddress.parse(body.getString("target"), "target");
        } catch (IllegalArgumentException e) {
            channel.refuse(e.getMessage());
            return;
        }
        String refusal = options.refusal(target);
        if (refusal != null) {
            LOG.log(System.Logger.Level.WARNING, "agent " + agent + ": relay " + id + " from " + channel.peer()
                    + " refused: " + refusal);
            channel.refuse("agent " + agent + ": " + refusal);
            return;
        }
        if (body.getBoolean("probe", false)) {
            // The source asks before it listens: the answer, and nothing connected.
            channel.send(FrameType.RELAY_OPENED, new JsonObject().put("probe", true))
                    .onComplete(v -> channel.fail("probe answered", true));
            return;
        }
        TargetRelay relay;
        boolean created = false;
        synchronized (this) {
            relay = destinations.get(id);
            if (relay == null) {
                if (records.containsKey(id)) {
                    channel.refuse("relay " + id + " is known to agent " + agent + " already");
                    return;
                }
                String source = body.getString("sourceAgent", "?") + " (" + channel.peer() + ")";
                RelayRecord record = new RelayRecord(RelayStatus.begin(id, "destination", agent, source,
                        target.toString(), null, RelayPhase.RELAYING));
                relay = new TargetRelay(vertx, options, targets, record, target, ending);
                destinations.put(id, relay);
                records.put(id, record);
                created = true;
            }
        }
        if (created) {
            metrics.relayStarted("destination");
            publish(relay.record().status(), "started");
        }
        listener.delegate = relay.listener();
        relay.open(channel, index, target);
    }

    /** Sends a channel's events to its relay once it has one. */
    private static final class DelegatingListener implements RelayChannel.Listener {
        volatile RelayChannel.Listener delegate;

        @Override
        public void ended(RelayChannel channel) {
            if (delegate != null) {
                delegate.ended(channel);
            }
        }

        @Override
        public void failed(RelayChannel channel, String reason, boolean fromPeer) {
            if (delegate != null) {
                delegate.failed(channel, reason, fromPeer);
            }
        }
    }

    private final class Events implements Ending {
        @Override
        public void changed(RelayStatus status, String event) {
            publish(status, event);
        }

        @Override
        public void ended(RelayStatus status) {
            count(status);
            String outcome = status.phase().name().toLowerCase();
            long wire = status.stream() == null ? -1 : status.stream().wireDowntimeNanos();
            metrics.relayEnded(status.role(), outcome, status.durationNanos(), wire);
            publish(status, outcome);
            synchronized (RelayService.this) {
                sources.remove(status.id());
                destinations.remove(status.id());
                counted.remove(status.id());
                dropOldEnded();
            }
        }
    }

    private void dropOldEnded() {
        List<String> ended = new ArrayList<>();
        records.forEach((id, r) -> {
            if (r.status().phase().isTerminal()) {
                ended.add(id);
            }
        });
        for (int i = 0; i < ended.size() - RETAINED; i++) {
            records.remove(ended.get(i));
        }
    }

    private void progress() {
        List<SourceRelay> s;
        List<TargetRelay> d;
        synchronized (this) {
            s = new ArrayList<>(sources.values());
            d = new ArrayList<>(destinations.values());
        }
        s.forEach(SourceRelay::refresh);
        d.forEach(TargetRelay::refresh);
        for (SourceRelay r : s) {
            if (!r.isEnded() && r.record().status().phase() == RelayPhase.RELAYING) {
                RelayStatus now = r.record().status();
                if (count(now)) {
                    publish(now, "progress");
                }
            }
        }
        for (TargetRelay r : d) {
            if (!r.isEnded()) {
                RelayStatus now = r.record().status();
                if (count(now)) {
                    publish(now, "progress");
                }
            }
        }
    }

    /** Counts what moved since the last look; true when anything did. */
    private synchronized boolean count(RelayStatus now) {
        RelayStatus before = counted.put(now.id(), now);
        boolean moved = false;
        for (RelayStatus.Channel c : now.channels()) {
            RelayStatus.Channel was = before == null || c.index() >= before.channels().size() ? null
                    : before.channels().get(c.index());
            long toDst = c.toDestination() - (was == null ? 0 : was.toDestination());
            long toSrc = c.toSource() - (was == null ? 0 : was.toSource());
            String kind = c.kind().equals("main") || c.kind().equals("multifd") ? c.kind() : "unknown";
            if (toDst > 0) {
                metrics.relayBytes("to-destination", kind, toDst);
                moved = true;
            }
            if (toSrc > 0) {
                metrics.relayBytes("to-source", kind, toSrc);
                moved = true;
            }
        }
        if (now.stream() != null) {
            QemuStreamReport was = before == null ? null : before.stream();
            now.stream().bytesByKind().forEach((kind, n) -> {
                long delta = n - (was == null ? 0 : was.bytesByKind().getOrDefault(kind, 0L));
                if (delta > 0) {
                    metrics.relaySectionBytes(kind, delta);
                }
            });
        }
        long normal = now.normalPages() - (before == null ? 0 : before.normalPages());
        long zero = now.zeroPages() - (before == null ? 0 : before.zeroPages());
        if (normal > 0) {
            metrics.relayPages("normal", normal);
        }
        if (zero > 0) {
            metrics.relayPages("zero", zero);
        }
        return moved;
    }

    private void publish(RelayStatus status, String event) {
        JsonObject body = status.toJson().put("agent", agent).put("event", event).put("relay", status.id());
        sink.accept(body);
        String who = "agent " + agent + ": relay " + status.id() + " (" + status.role() + ", " + status.listen()
                + " -> " + status.peer() + " -> " + status.target() + ")";
        switch (event) {
            case "started" -> LOG.log(System.Logger.Level.INFO, who + " started");
            case "completed" -> LOG.log(System.Logger.Level.INFO, who + " completed: " + status.toDestination()
                    + " bytes over " + status.channels().size() + " channels");
            case "failed", "cancelled" -> LOG.log(System.Logger.Level.WARNING, who + " " + event + ": "
                    + status.error());
            default -> LOG.log(System.Logger.Level.DEBUG, who + " " + event);
        }
    }

    /** Ends every relay because the agent stops; completes once each ended. */
    public Future<Void> shutdown() {
        List<Future<Void>> ends = new ArrayList<>();
        synchronized (this) {
            for (SourceRelay r : sources.values()) {
                r.abort("agent " + agent + " is shutting down");
                ends.add(r.done());
            }
            for (TargetRelay r : destinations.values()) {
                r.shutdown("agent " + agent + " is shutting down");
                ends.add(r.done());
            }
        }
        return Future.join(ends).mapEmpty();
    }

    public Future<Void> close() {
        vertx.cancelTimer(progressTimer);
        return targets.close();
    }
}
