package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.transport.StreamConnection;
import io.vfioproxy.transport.TcpConnector;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

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
    private final TcpConnector connector;
    private final MigrationOptions options;
    private final MigrationEvents events;
    private final Map<String, MigrationRecord> records = new ConcurrentHashMap<>();
    private final Map<String, SourceMigration> running = new ConcurrentHashMap<>();

    public MigrationService(Vertx vertx, String agent, DeviceRegistry devices, TcpConnector connector,
            MigrationOptions options) {
        this.vertx = vertx;
        this.agent = agent;
        this.devices = devices;
        this.connector = connector;
        this.options = options;
        this.events = new MigrationEvents(vertx.eventBus(), agent);
    }

    public MigrationOptions options() {
        return options;
    }

    /**
     * Starts migrating devices of this agent. Call on an event-loop context; the migration runs there.
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
        running.put(id, migration);
        Future<MigrationRecord> completion = migration.run().andThen(ar -> running.remove(id));
        return new Started(record, completion);
    }

    /**
     * Cancels a running source migration.
     *
     * @throws Rejected 404 for an unknown migration, 409 for one that ended or committed
     */
    public MigrationRecord cancel(String id) {
        return control(id, SourceMigration::cancel);
    }

    /**
     * Lets a migration with a manual switchover go on.
     *
     * @throws Rejected 404 for an unknown migration, 409 for one that ended or switches over by itself
     */
    public MigrationRecord release(String id) {
        return control(id, SourceMigration::release);
    }

    private MigrationRecord control(String id, java.util.function.Function<SourceMigration, String> action) {
        MigrationRecord record = find(id);
        if (record == null) {
            throw new Rejected(404, "no migration '" + id + "' on agent " + agent);
        }
        SourceMigration migration = running.get(id);
        if (migration == null) {
            throw new Rejected(409, record.role() == MigrationRecord.Role.DESTINATION
                    ? "migration " + id + " is controlled by its source agent"
                    : "migration " + id + " has already ended (" + record.outcome().name().toLowerCase() + ")");
        }
        String refused = action.apply(migration);
        if (refused != null) {
            throw new Rejected(409, refused);
        }
        return record;
    }

    /** Serves a connection from a source agent. */
    public void accept(StreamConnection connection) {
        new DestinationSession(vertx, agent, connection, devices, options, events, id -> {
            MigrationRecord record = new MigrationRecord(id, MigrationRecord.Role.DESTINATION, agent);
            records.put(key(record), record);
            return record;
        }).start();
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
