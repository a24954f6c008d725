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
     * Starts migrating a device of this agent. Call on an event-loop context; the migration runs there.
     *
     * @throws Rejected 404 for an unknown device, 409 for a device that is already migrating, 400 for bad options
     */
    public Started migrate(MigrationRequest request) {
        DeviceHandle device = devices.find(request.device());
        if (device == null) {
            throw new Rejected(404, "agent " + agent + " has no device named '" + request.device() + "'");
        }
        MigrationOptions opts = options;
        if (request.chunkSize() != 0) {
            if (request.chunkSize() < 4096 || request.chunkSize() > options.limits().maxChunk()) {
                throw new Rejected(400, "chunkSize " + request.chunkSize() + " must be from 4096 to "
                        + options.limits().maxChunk());
            }
            opts = options.withChunkSize(request.chunkSize());
        }
        String id = "m-" + UUID.randomUUID();
        if (!device.claim(id)) {
            throw new Rejected(409, "device " + device.name() + " is busy with migration " + device.owner());
        }
        MigrationRecord record = new MigrationRecord(id, MigrationRecord.Role.SOURCE, agent);
        record.devices(device.name(), request.targetDevice(), request.destination().toString());
        record.stateSize(device.identity().stateSize());
        records.put(key(record), record);
        events.publish(record, "started", new JsonObject().put("request", request.toJson()));
        SourceMigration migration = new SourceMigration(vertx, agent, record, device, request.targetDevice(),
                () -> connector.connect(request.destination()), opts, events);
        return new Started(record, migration.run());
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
