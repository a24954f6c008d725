package io.vfioproxy.api;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.eventbus.Message;
import io.vertx.core.eventbus.MessageConsumer;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.migration.MigrationRecord;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * Request/reply commands on the event bus, for subscribers in process, on a clustered bus or through a bridge
 * (docs/EVENTS.md). Addresses are {@code vmp.agent.<agent>.<command>}:
 *
 * <ul>
 *   <li>{@code migrate}: the body of {@code POST /v1/migrations}; replies with the migration</li>
 *   <li>{@code cancel}, {@code switchover}: {@code {"migration": id}}; replies with the migration</li>
 *   <li>{@code device}: {@code {"device": name}}; replies with the device and its state</li>
 *   <li>{@code ping}: replies {@code {"agent": name}}</li>
 * </ul>
 *
 * A refused command fails with the HTTP status the API would give (400, 404, 409) and the same message.
 */
public final class AgentCommands {

    private final Vertx vertx;
    private final String agent;
    private final DeviceRegistry devices;
    private final MigrationService migrations;
    private final ApiContract contract;
    private final List<MessageConsumer<Object>> consumers = new ArrayList<>();

    /** @param contract checks command bodies against the API's schemas, as the HTTP API checks its requests */
    public AgentCommands(Vertx vertx, String agent, DeviceRegistry devices, MigrationService migrations,
            ApiContract contract) {
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
        handle("ping", body -> Future.succeededFuture(new JsonObject().put("agent", agent)));
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

    /** The device's name, flags, identity, state and the migration holding it, if one does. */
    public static Future<JsonObject> describe(DeviceHandle d) {
        JsonObject json = new JsonObject()
                .put("name", d.name())
                .put("flags", d.flags().toString())
                .put("identity", d.identity().toJson());
        if (d.owner() != null) {
            json.put("migration", d.owner());
        }
        return d.state().map(s -> json.put("state", s.name()))
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
        } else if (error instanceof IllegalArgumentException || error instanceof ClassCastException) {
            message.fail(400, error.getMessage());
        } else {
            message.fail(500, String.valueOf(error.getMessage()));
        }
    }

}
