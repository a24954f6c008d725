package io.vfioproxy.migration;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.migration.MigrationEvents.Lifecycle;
import io.vfioproxy.migration.MigrationStatus.Peers;
import io.vfioproxy.migration.MigrationStatus.Role;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.stream.StreamConnector;
import io.vfioproxy.vertx.VertxInternals;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * The migrations of one agent: starts source migrations on request, serves destination connections, and lets the
 * operator cancel or release them. Their records live in the {@link MigrationRegistry}; the
 * {@link ProgressReporter} follows the active ones.
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

    /** A started source migration: its record now, its final status later. */
    public record Started(MigrationRecord record, Future<MigrationStatus> completion) {
    }

    /** A source migration and the context it runs on: every call into it goes through that context. */
    private record Running(SourceMigration migration, Context context, Future<MigrationStatus> completion) {
    }

    /** How long stopping the agent waits for a migration's devices to reach their final state. */
    static final long SETTLE_SECONDS = 30;
    /** How far back a failed migration counts as interrupted by a peer that left the cluster. */
    static final long PEER_LEFT_WINDOW_SECONDS = 120;

    private final Vertx vertx;
    private final String agent;
    private final DeviceRegistry devices;
    private final StreamConnector connector;
    private final MigrationOptions options;
    private final MigrationEvents events;
    private final MigrationRegistry registry = new MigrationRegistry();
    private final ProgressReporter progress;
    private final Map<String, Running> running = new ConcurrentHashMap<>();
    private final Map<String, DestinationSession> sessions = new ConcurrentHashMap<>();
    private final Journal journal;

    /**
     * Call on the agent's context: the progress loop (ten ticks a second) runs there.
     *
     * @param lifecycle where lifecycle events go (the agent publishes them on the event bus)
     * @param progressEvents where progress events go
     */
    public MigrationService(Vertx vertx, String agent, DeviceRegistry devices, StreamConnector connector,
            MigrationOptions options, MigrationMetrics metrics, Consumer<JsonObject> lifecycle,
            Consumer<JsonObject> progressEvents) {
        this.vertx = vertx;
        this.agent = agent;
        this.devices = devices;
        this.connector = connector;
        this.options = options;
        this.events = new MigrationEvents(agent, lifecycle);
        this.journal = new Journal(options.journalDir() == null ? null : java.nio.file.Path.of(options.journalDir()));
        this.progress = new ProgressReporter(vertx, agent, metrics, progressEvents);
        devices.beforeClose(this::endMigrationOf);
    }

    /**
     * Puts right what the previous agent process left in the journal (its migrations were interrupted by its end):
     * call once the devices are open and before the stream endpoint serves.
     *
     * @return the migrations reported, each failed with its reason
     */
    public Future<List<MigrationRecord>> recover() {
        return new Reconciler(vertx, agent, devices, journal, registry, events).run();
    }

    public MigrationOptions options() {
        return options;
    }

    /** Stops the progress loop. */
    public void close() {
        progress.close();
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
     * Agent {@code peer} is gone (it left the cluster): the migrations this agent runs with it fail now with
     * {@code reason}, on their own contexts.
     *
     * @return those, and the ones with it that had failed in the last {@value #PEER_LEFT_WINDOW_SECONDS} s (a killed
     *         peer's connection usually tells before the cluster does), oldest first
     */
    public List<String> peerLeft(String peer, String reason) {
        List<String> interrupted = new ArrayList<>();
        Instant since = Instant.now().minusSeconds(PEER_LEFT_WINDOW_SECONDS);
        for (MigrationRecord r : registry.all()) {
            MigrationStatus s = r.status();
            if (!peer.equals(s.peers().peerAgent())) {
                continue;
            }
            Running source = running.get(r.id());
            DestinationSession destination = sessions.get(r.id());
            if (s.outcome() == MigrationStatus.Outcome.ACTIVE && (source != null || destination != null)) {
                interrupted.add(r.id());
                if (source != null) {
                    source.context().runOnContext(v -> source.migration().abort(reason));
                } else {
                    destination.abort(reason);
                }
            } else if (s.outcome() == MigrationStatus.Outcome.FAILED && s.ending() != null
                    && s.ending().endedAt().isAfter(since)) {
                interrupted.add(r.id());
            }
        }
        return interrupted;
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
        if (sources.size() > Hello.MAX_CHANNEL + 1) {
            throw new Rejected(400, "one migration moves at most " + (Hello.MAX_CHANNEL + 1) + " devices");
        }
        if (sources.size() > 1 && !request.allowWithoutP2p()) {
            for (DeviceHandle d : sources) {
                if (!d.flags().p2p()) {
                    throw new Rejected(400, "device " + d.name() + " has no VFIO_MIGRATION_P2P: migrated with others "
                            + "it cannot be quiesced while its peers still run, and their peer-to-peer DMA could reach "
                            + "it stopped (QEMU refuses this too); migrate it alone, or set allowDevicesWithoutP2p");
                }
            }
        }
        if (running.size() + sessions.size() >= options.maxConcurrent()) {
            throw new Rejected(409, "agent " + agent + " runs " + options.maxConcurrent() + " migrations already "
                    + "(migration.maxConcurrent)");
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
        long stateSize = sources.stream().mapToLong(d -> d.identity().stateSize()).sum();
        MigrationRecord record = registry.register(MigrationStatus.begin(id, Role.SOURCE, agent, request.mode(),
                Phase.CONNECTING));
        MigrationStatus status = record.update(s -> s.withPeers(new Peers(
                sources.stream().map(DeviceHandle::name).toList(),
                request.devices().stream().map(MigrationRequest.DevicePair::targetDevice).toList(),
                request.destination().toString())).withTransfer(s.transfer().withStateSize(stateSize)));
        progress.track(record);
        events.publish(status, Lifecycle.STARTED, new JsonObject().put("request", request.toJson()));
        SourceMigration migration = new SourceMigration(vertx, agent, record, sources, request,
                () -> connector.connect(request.destination()), opts, events, journal);
        // A context of its own: Vert.x spreads them over its event loops, so concurrent migrations use every core.
        Context context = VertxInternals.newEventLoopContext(vertx);
        Promise<MigrationStatus> completion = Promise.promise();
        running.put(id, new Running(migration, context, completion.future()));
        // A bug that throws inside run() still ends the migration: compose turns it into a failure.
        context.runOnContext(v -> Future.succeededFuture().compose(ignored -> migration.run()).andThen(ar -> {
            running.remove(id);
            registry.ended(record);
        }).onComplete(completion));
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

    private Future<MigrationRecord> control(String id, Function<SourceMigration, String> action) {
        MigrationRecord record = registry.find(id);
        if (record == null) {
            return Future.failedFuture(new Rejected(404, "no migration '" + id + "' on agent " + agent));
        }
        Running r = running.get(id);
        if (r == null) {
            return Future.failedFuture(new Rejected(409, record.role() == Role.DESTINATION
                    ? "migration " + id + " is controlled by its source agent"
                    : "migration " + id + " has already ended (" + record.status().outcome().name().toLowerCase()
                            + ")"));
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

    /**
     * Serves a device connection of a migration this agent receives (its first frame is JOIN; feature
     * {@code device-connections}).
     */
    public void join(StreamConnection connection) {
        new JoinedChannel(vertx, agent, connection, options, sessions::get).start();
    }

    /** Serves a connection from a source agent. */
    public void accept(StreamConnection connection) {
        DestinationSession[] session = new DestinationSession[1];
        session[0] = new DestinationSession(vertx, agent, connection, devices, options, events, journal, initial -> {
            if (running.size() + sessions.size() >= options.maxConcurrent()) {
                return null;
            }
            MigrationRecord record = registry.register(initial);
            if (record != null) {
                progress.track(record);
                sessions.put(record.id(), session[0]);
                session[0].settled().onComplete(v -> {
                    sessions.remove(record.id(), session[0]);
                    registry.ended(record);
                });
            }
            return record;
        });
        session[0].start();
    }

    /** The migration with this id; the source side first where this agent is both. */
    public MigrationRecord find(String id) {
        return registry.find(id);
    }

    /** Every migration this agent took part in, oldest first. */
    public List<MigrationRecord> all() {
        return registry.all();
    }
}
