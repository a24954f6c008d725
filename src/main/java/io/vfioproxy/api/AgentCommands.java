package io.vfioproxy.api;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.eventbus.Message;
import io.vertx.core.eventbus.MessageConsumer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.migration.MigrationRecord;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.relay.RelayRecord;
import io.vfioproxy.relay.RelayRequest;
import io.vfioproxy.relay.RelayService;
import io.vfioproxy.uapi.Errno;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * Request/reply commands on the event bus, for subscribers in process, on a clustered bus or through a bridge
 * (docs/EVENTS.md). Addresses are {@code vmp.agent.<agent>.<command>}:
 *
 * <ul>
 *   <li>{@code migrate}: the body of {@code POST /v1/migrations}; replies with the migration</li>
 *   <li>{@code cancel}, {@code switchover}: {@code {"migration": id}}; replies with the migration</li>
 *   <li>{@code device}: {@code {"device": name}}; replies with the device and its state</li>
 *   <li>{@code release}: {@code {"device": name, "handback": path}} or {@code {"device": name, "discard": true}}:
 *   the body of {@code POST /v1/devices/{name}/release} with the device's name; replies with the device</li>
 *   <li>{@code relay}: the body of {@code POST /v1/relays}; replies with the relay, listening</li>
 *   <li>{@code cancel-relay}: {@code {"relay": id}}; replies with the relay</li>
 *   <li>{@code ping}: replies {@code {"agent": name}}</li>
 *   <li>{@code agent}: replies {@code {"agent", "ready", "streamPort", "apiPort", "devices"}}: what
 *   {@code GET /v1/cluster} lists for each agent</li>
 * </ul>
 *
 * A refused command fails with the HTTP status the API would give (400, 404, 409) and the same message.
 */
public final class AgentCommands {

    private final Vertx vertx;
    private final String agent;
    private final DeviceRegistry devices;
    private final MigrationService migrations;
    private final RelayService relays;
    private final ApiContract contract;
    private final Supplier<Future<JsonObject>> about;
    private final List<MessageConsumer<Object>> consumers = new ArrayList<>();

    /**
     * @param contract checks command bodies against the API's schemas, as the HTTP API checks its requests
     * @param about the agent's readiness and ports, for the {@code agent} command
     */
    public AgentCommands(Vertx vertx, String agent, DeviceRegistry devices, MigrationService migrations,
            RelayService relays, ApiContract contract, Supplier<Future<JsonObject>> about) {
        this.about = about;
        this.relays = relays;
        this.contract = contract;
        this.vertx = vertx;
        this.agent = agent;
        this.devices = devices;
        this.migrations = migrations;
    }

    /** Registers every command; completes once the bus knows them. */
    public Future<Void> register() {
        handle("migrate", body -> {
            contract.validate("MigrationRequest", body);
            // Routed here by another agent's API: "node-a/gpu0" names this agent's gpu0.
            Routing.local(agent, body);
            return Future.succeededFuture(migrations.migrate(MigrationRequest.fromJson(body)).record().toJson());
        });
        handle("cancel", body -> migrations.cancel(migration(body)).map(MigrationRecord::toJson));
        handle("switchover", body -> migrations.release(migration(body)).map(MigrationRecord::toJson));
        handle("device", body -> {
            DeviceHandle d = devices.find(body.getString("device", ""));
            if (d == null) {
                throw new MigrationService.Rejected(404, "agent " + agent + " has no device named '"
                        + body.getString("device") + "'");
            }
            return describe(d);
        });
        handle("release", body -> {
            JsonObject request = body.copy();
            String name = String.valueOf(request.remove("device"));
            contract.validate("DeviceRelease", request);
            return release(agent, devices, name, request);
        });
        handle("relay", body -> {
            contract.validate("RelayRequest", body);
            return relays.start(RelayRequest.fromJson(Routing.localRelay(body))).map(RelayRecord::toJson);
        });
        handle("cancel-relay", body -> {
            String id = body.getString("relay");
            if (id == null) {
                throw new IllegalArgumentException("'relay' is required: the relay's id");
            }
            return relays.cancel(id).map(RelayRecord::toJson);
        });
        handle("ping", body -> Future.succeededFuture(new JsonObject().put("agent", agent)));
        handle("agent", body -> about.get().compose(self -> {
            List<Future<JsonObject>> all = new ArrayList<>();
            devices.all().forEach(d -> all.add(describe(d)));
            return Future.all(all).map(v -> self.copy().put("agent", agent)
                    .put("devices", new JsonArray(all.stream().map(Future::result).toList())));
        }));
        List<Future<Void>> registered = new ArrayList<>();
        consumers.forEach(c -> registered.add(c.completion()));
        return Future.all(registered).mapEmpty();
    }

    /** A round trip through the bus to this agent's own ping. */
    public Future<Void> ping() {
        return vertx.eventBus().<JsonObject>request(Events.command(agent, "ping"), new JsonObject()).mapEmpty();
    }

    private static String migration(JsonObject body) {
        String id = body.getString("migration");
        if (id == null) {
            throw new IllegalArgumentException("'migration' is required: the migration's id");
        }
        return id;
    }

    /**
     * Releases a device to the consumer that will run it ({@code "handback"}: the unix socket it listens on; the
     * device's fds go there over SCM_RIGHTS), or gives up the state it holds for one ({@code "discard": true}: the
     * device is reset). A device a migration holds is refused (409), as is a discard with nothing held.
     *
     * @return the device as {@link #describe} gives it, afterwards
     */
    public static Future<JsonObject> release(String agent, DeviceRegistry devices, String name, JsonObject request) {
        DeviceHandle d = devices.find(name);
        if (d == null) {
            return Future.failedFuture(new MigrationService.Rejected(404, "agent " + agent + " has no device named '"
                    + name + "'"));
        }
        if (d.owner() != null) {
            return Future.failedFuture(new MigrationService.Rejected(409, "device " + name + " is busy with migration "
                    + d.owner()));
        }
        if (d.handedOverTo() != null) {
            return Future.failedFuture(new MigrationService.Rejected(409, "device " + name + " was already handed to "
                    + d.handedOverTo()));
        }
        String handback = request.getString("handback");
        if (handback != null) {
            return d.handOver(handback).<JsonObject>transform(ar -> {
                if (ar.failed()) {
                    int status = ar.cause() instanceof VfioException v && v.errno() == Errno.EOPNOTSUPP.value() ? 409 : 502;
                    return Future.failedFuture(new MigrationService.Rejected(status, ar.cause().getMessage()));
                }
                return describe(d);
            });
        }
        if (!request.getBoolean("discard", false)) {
            return Future.failedFuture(new IllegalArgumentException("release device " + name
                    + ": say where its consumer takes it ('handback': a unix socket path) or 'discard': true"));
        }
        if (d.heldFor() == null) {
            return Future.failedFuture(new MigrationService.Rejected(409, "device " + name
                    + " holds no migrated state to discard"));
        }
        return d.discardHeld("release " + name + ": state of migration " + d.heldFor() + " discarded")
                .compose(v -> describe(d));
    }

    /**
     * The device's name, kind, what a destination does with it, flags, identity, state and the migration holding
     * it, if one does; where the agent holds a migrated state for the device's consumer, or handed it over; the
     * digest of its state where the backend tells it (the simulator).
     */
    public static Future<JsonObject> describe(DeviceHandle d) {
        JsonObject json = new JsonObject()
                .put("name", d.name())
                .put("flags", d.flags().toString())
                .put("identity", d.identity().toJson())
                .mergeIn(d.policy().toJson());
        if (d.owner() != null) {
            json.put("migration", d.owner());
        }
        if (d.heldFor() != null) {
            json.put("heldFor", d.heldFor());
        }
        if (d.movedBy() != null) {
            json.put("movedBy", d.movedBy());
        }
        if (d.handedOverTo() != null) {
            // The consumer has it now: the agent cannot ask its state.
            return Future.succeededFuture(json.put("handedOverTo", d.handedOverTo()));
        }
        return d.state().map(s -> json.put("state", s.name()))
                .compose(j -> d.submit(dc -> dc.device().contentDigest()).map(digest -> {
                    digest.ifPresent(v -> j.put("stateDigest", String.format("%016x", v)));
                    return j;
                }))
                .recover(e -> Future.succeededFuture(json.put("state", "unknown").put("error", e.getMessage())));
    }

    private void handle(String command, Function<JsonObject, Future<JsonObject>> action) {
        consumers.add(vertx.eventBus().<Object>consumer(Events.command(agent, command), message -> {
            JsonObject body = message.body() instanceof JsonObject j ? j : new JsonObject();
            try {
                action.apply(body).onComplete(ar -> reply(message, ar.succeeded() ? ar.result() : null, ar.cause()));
            } catch (RuntimeException e) {
                reply(message, null, e);
            }
        }));
    }

    private static void reply(Message<Object> message, JsonObject result, Throwable error) {
        if (error == null) {
            message.reply(result);
        } else if (error instanceof MigrationService.Rejected r) {
            message.fail(r.status(), r.getMessage());
        } else if (error instanceof RelayService.Rejected r) {
            message.fail(r.status(), r.getMessage());
        } else if (error instanceof IllegalArgumentException || error instanceof ClassCastException) {
            message.fail(400, error.getMessage());
        } else {
            message.fail(500, String.valueOf(error.getMessage()));
        }
    }

}
