package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.internal.ContextInternal;
import io.vertx.core.internal.VertxInternal;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.api.AgentMetrics;
import io.vfioproxy.api.Events;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.transport.StreamConnection;
import io.vfioproxy.transport.StreamConnector;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Set;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The migrations of one agent: starts source migrations on request and serves destination connections, and
 * keeps the record of each for the API.
 */
public final class MigrationService {

    /** A request the agent cannot take; {@link #status()} is the HTTP status that fits. */
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

    /** A started source migration: its record now, its outcome later. */
    public record Started(MigrationRecord record, Future<MigrationRecord> completion) {
    }

    private final Vertx vertx;
    private final String agent;
    private final DeviceRegistry devices;
    private final StreamConnector connector;
    private final MigrationOptions options;
    private final MigrationEvents events;
    private final Map<String, MigrationRecord> records = new ConcurrentHashMap<>();
    private final Map<String, Running> running = new ConcurrentHashMap<>();
    private final Map<String, DestinationSession> sessions = new ConcurrentHashMap<>();

    /** A source migration and the context it runs on: every call into it goes through that context. */
    private record Running(SourceMigration migration, ContextInternal context, Future<MigrationRecord> completion) {
    }
    private final AgentMetrics metrics;
    /** Per migration that is still active: what the last progress tick saw. */
    private final Map<String, Seen> seen = new HashMap<>();
    private final Set<String> ended = new HashSet<>();
    private final long progressTimer;

    /** What one progress tick saw of a migration. */
    private record Seen(long bytes, long nanos, String phase, Map<String, long[]> deviceBytes) {
    }

    /**
     * Call on the agent's context: the progress loop (ten ticks a second) runs there.
     */
    public MigrationService(Vertx vertx, String agent, DeviceRegistry devices, StreamConnector connector,
            MigrationOptions options, AgentMetrics metrics) {
        this.vertx = vertx;
        this.agent = agent;
        this.devices = devices;
        this.connector = connector;
        this.options = options;
        this.metrics = metrics;
        this.events = new MigrationEvents(vertx.eventBus(), agent);
        this.progressTimer = vertx.setPeriodic(PROGRESS_MILLIS, id -> progress());
        devices.beforeClose(this::endMigrationOf);
    }

    /**
     * Ends every migration of this agent because it stops: sources resume their devices, destinations reset
     * theirs (or keep a loaded state, as after any failure past LOADED). Runs before connections and devices close.
     *
     * @return completes once every device is in its final state
     */
    public Future<?> shutdown() {
        List<Future<?>> settled = new ArrayList<>();
        running.keySet().forEach(id -> settled.add(end(id)));
        sessions.keySet().forEach(id -> settled.add(end(id)));
        return Future.join(settled);
    }

    /**
     * Ends the migration holding {@code device}, if any, because the agent stops: called before the device closes,
     * so the rollback can still reach it.
     */
    private Future<?> endMigrationOf(DeviceHandle device) {
        String id = device.owner();
        return id == null ? Future.succeededFuture() : end(id);
    }

    /**
     * Ends migration {@code id} because the agent stops.
     *
     * @return completes, never fails, once its devices are in their final state, or after {@value #SETTLE_SECONDS}
     *         s for one whose device does not answer, so a hung device does not hold the agent's stop for ever
     */
    private Future<?> end(String id) {
        Running source = running.get(id);
        DestinationSession destination = sessions.get(id);
        Future<?> settled;
        if (source != null) {
            source.context().runOnContext(v -> source.migration().shutdown());
            settled = source.completion();
        } else if (destination != null) {
            settled = destination.shutdown();
        } else {
            return Future.succeededFuture();
        }
        return settled.timeout(SETTLE_SECONDS, TimeUnit.SECONDS).otherwiseEmpty();
    }

    /** How long stopping the agent waits for a migration's devices to reach their final state. */
    static final long SETTLE_SECONDS = 30;

    /** Ten times a second. */
    public static final long PROGRESS_MILLIS = 100;

    /** Ended migrations kept for the API; older ones are forgotten. */
    static final int KEEP_ENDED = 1000;

    /** Stops the progress loop. */
    public void close() {
        vertx.cancelTimer(progressTimer);
    }

    /**
     * Publishes progress of the active migrations whose bytes or phase moved, feeds the byte counters, and
     * records each migration's end in the metrics. Cheap: a few fields per active migration.
     */
    private void progress() {
        forgetOldest();
        long now = System.nanoTime();
        for (MigrationRecord r : records.values()) {
            String key = key(r);
            if (ended.contains(key)) {
                continue;
            }
            String role = r.role().name().toLowerCase();
            Seen before = seen.get(key);
            if (before == null) {
                metrics.started(role);
                before = new Seen(0, now, "", Map.of());
            }
            Map<String, long[]> bytes = r.deviceBytes();
            bytes.forEach((device, b) -> {
                long[] was = seen.containsKey(key) ? seen.get(key).deviceBytes().getOrDefault(device, new long[2])
                        : new long[2];
                if (r.role() == MigrationRecord.Role.SOURCE) {
                    metrics.bytes(device, "precopy", "sent", b[0] - was[0]);
                    metrics.bytes(device, "stop-copy", "sent", b[1] - was[1]);
                } else {
                    metrics.bytes(device, "all", "received", b[1] - was[1]);
                }
            });
            if (r.outcome() != MigrationRecord.Outcome.ACTIVE) {
                metrics.ended(role, r.outcome().name().toLowerCase(), r.durationMillis(),
                        r.role() == MigrationRecord.Role.SOURCE ? r.downtimeMillis() : -1);
                seen.remove(key);
                ended.add(key);
                continue;
            }
            long data = r.dataBytes();
            if (data != before.bytes() || !r.phase().equals(before.phase())) {
                double seconds = (now - before.nanos()) / 1e9;
                long rate = seconds > 0 ? (long) ((data - before.bytes()) / seconds) : 0;
                long remaining = r.remainingBytes();
                JsonObject progress = new JsonObject().put("agent", agent).put("migration", r.id()).put("role", role)
                        .put("phase", r.phase()).put("dataBytes", data).put("stateSize", r.stateSize())
                        .put("remainingBytes", remaining).put("rateBytesPerSecond", rate);
                if (rate > 0 && remaining >= 0) {
                    progress.put("etaSeconds", remaining / (double) rate);
                }
                vertx.eventBus().publish(Events.PROGRESS, progress);
            }
            seen.put(key, new Seen(data, now, r.phase(), bytes));
        }
    }

    public MigrationOptions options() {
        return options;
    }

    /**
     * Starts migrating devices of this agent. The migration runs on an event-loop context of its own.
     *
     * @throws Rejected 404 for an unknown device, 409 for a device that is already migrating, 400 for bad options
     */
    public Started migrate(MigrationRequest request) {
        List<DeviceHandle> sources = new ArrayList<>();
        for (MigrationRequest.DevicePair pair : request.devices()) {
            DeviceHandle device = devices.find(pair.device());
            if (device == null) {
                throw new Rejected(404, "agent " + agent + " has no device named '" + pair.device() + "'");
            }
            sources.add(device);
        }
        MigrationOptions opts = options;
        if (request.chunkSize() != 0) {
            if (request.chunkSize() < 4096 || request.chunkSize() > options.limits().maxChunk()) {
                throw new Rejected(400, "chunkSize " + request.chunkSize() + " must be from 4096 to "
                        + options.limits().maxChunk());
            }
            opts = options.withChunkSize(request.chunkSize());
        }
        if (sources.size() > 256) {
            throw new Rejected(400, "one migration moves at most 256 devices");
        }
        String id = "m-" + UUID.randomUUID();
        List<DeviceHandle> claimed = new ArrayList<>();
        for (DeviceHandle d : sources) {
            if (!d.claim(id)) {
                claimed.forEach(c -> c.release(id));
                throw new Rejected(409, "device " + d.name() + " is busy with migration " + d.owner());
            }
            claimed.add(d);
        }
        MigrationRecord record = new MigrationRecord(id, MigrationRecord.Role.SOURCE, agent);
        record.devices(String.join(",", sources.stream().map(DeviceHandle::name).toList()),
                String.join(",", request.devices().stream().map(MigrationRequest.DevicePair::targetDevice).toList()),
                request.destination().toString());
        record.stateSize(sources.stream().mapToLong(d -> d.identity().stateSize()).sum());
        records.put(key(record), record);
        events.publish(record, "started", new JsonObject().put("request", request.toJson()));
        SourceMigration migration = new SourceMigration(vertx, agent, record, sources, request,
                () -> connector.connect(request.destination()), opts, events);
        // A context of its own: Vert.x spreads them over its event loops, so concurrent migrations use every core.
        ContextInternal context = ((VertxInternal) vertx).createEventLoopContext();
        Promise<MigrationRecord> completion = context.promise();
        running.put(id, new Running(migration, context, completion.future()));
        context.runOnContext(v -> migration.run().andThen(ar -> running.remove(id)).onComplete(completion));
        return new Started(record, completion.future());
    }

    /**
     * Cancels a running source migration, on the migration's own context.
     *
     * @return the migration, or a failed future with {@link Rejected}: 404 for an unknown migration, 409 for one
     *         that ended or committed
     */
    public Future<MigrationRecord> cancel(String id) {
        return control(id, SourceMigration::cancel);
    }

    /**
     * Lets a migration with a manual switchover go on, on the migration's own context.
     *
     * @return the migration, or a failed future with {@link Rejected}: 404 for an unknown migration, 409 for one
     *         that ended or switches over by itself
     */
    public Future<MigrationRecord> release(String id) {
        return control(id, SourceMigration::release);
    }

    private Future<MigrationRecord> control(String id, java.util.function.Function<SourceMigration, String> action) {
        MigrationRecord record = find(id);
        if (record == null) {
            return Future.failedFuture(new Rejected(404, "no migration '" + id + "' on agent " + agent));
        }
        Running r = running.get(id);
        if (r == null) {
            return Future.failedFuture(new Rejected(409, record.role() == MigrationRecord.Role.DESTINATION
                    ? "migration " + id + " is controlled by its source agent"
                    : "migration " + id + " has already ended (" + record.outcome().name().toLowerCase() + ")"));
        }
        Promise<MigrationRecord> done = Promise.promise();
        r.context().runOnContext(v -> {
            String refused = action.apply(r.migration());
            if (refused != null) {
                done.fail(new Rejected(409, refused));
            } else {
                done.complete(record);
            }
        });
        return done.future();
    }

    /** Serves a connection from a source agent. */
    public void accept(StreamConnection connection) {
        AtomicReference<DestinationSession> session = new AtomicReference<>();
        session.set(new DestinationSession(vertx, agent, connection, devices, options, events, id -> {
            MigrationRecord record = new MigrationRecord(id, MigrationRecord.Role.DESTINATION, agent);
            records.put(key(record), record);
            sessions.put(id, session.get());
            session.get().settled().onComplete(v -> sessions.remove(id));
            return record;
        }));
        session.get().start();
    }

    /** Keeps the {@value #KEEP_ENDED} most recent ended migrations; active ones are always kept. */
    private void forgetOldest() {
        if (ended.size() <= KEEP_ENDED) {
            return;
        }
        List<MigrationRecord> done = new ArrayList<>();
        for (String key : ended) {
            MigrationRecord r = records.get(key);
            if (r != null) {
                done.add(r);
            }
        }
        done.sort(Comparator.comparing(r -> r.toJson().getString("startedAt")));
        for (MigrationRecord r : done.subList(0, done.size() - KEEP_ENDED)) {
            records.remove(key(r));
            ended.remove(key(r));
        }
    }

    private static String key(MigrationRecord record) {
        return record.id() + "/" + record.role();
    }

    /** The migration with this id; the source side first where this agent is both. */
    public MigrationRecord find(String id) {
        MigrationRecord source = records.get(id + "/" + MigrationRecord.Role.SOURCE);
        return source != null ? source : records.get(id + "/" + MigrationRecord.Role.DESTINATION);
    }

    /** Every migration this agent took part in, oldest first. */
    public List<MigrationRecord> all() {
        List<MigrationRecord> list = new ArrayList<>(records.values());
        list.sort(Comparator.comparing(r -> r.toJson().getString("startedAt")));
        return list;
    }
}
