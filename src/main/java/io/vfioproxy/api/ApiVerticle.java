package io.vfioproxy.api;

import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.http.HttpServer;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.migration.MigrationRecord;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import java.util.ArrayList;
import java.util.List;

/**
 * The agent's HTTP API, version 1: devices, migrations and a health check. Errors are
 * {@code {"error": {"status": N, "message": "..."}}}.
 */
public final class ApiVerticle extends VerticleBase {

    private final String agent;
    private final ApiOptions options;
    private final DeviceRegistry devices;
    private final MigrationService migrations;
    private HttpServer server;

    public ApiVerticle(String agent, ApiOptions options, DeviceRegistry devices, MigrationService migrations) {
        this.agent = agent;
        this.options = options;
        this.devices = devices;
        this.migrations = migrations;
    }

    @Override
    public Future<?> start() {
        Router router = Router.router(vertx);
        router.route().handler(BodyHandler.create().setBodyLimit(64 * 1024));
        router.get("/healthz").handler(rc -> json(rc, 200, new JsonObject().put("status", "UP").put("agent", agent)));
        router.get("/v1/devices").handler(this::listDevices);
        router.get("/v1/devices/:name").handler(this::getDevice);
        router.post("/v1/migrations").handler(this::startMigration);
        router.get("/v1/migrations").handler(rc -> json(rc, 200, new JsonObject().put("migrations",
                new JsonArray(migrations.all().stream().map(MigrationRecord::toJson).toList()))));
        router.get("/v1/migrations/:id").handler(this::getMigration);
        router.post("/v1/migrations/:id/cancel").handler(rc -> control(rc, migrations::cancel));
        router.post("/v1/migrations/:id/switchover").handler(rc -> control(rc, migrations::release));
        router.route().last().handler(rc -> error(rc, 404, "no such resource: " + rc.request().method() + " "
                + rc.request().path()));
        router.route().failureHandler(rc -> error(rc, rc.statusCode() > 0 ? rc.statusCode() : 500,
                rc.failure() == null ? "request failed" : rc.failure().getMessage()));
        server = vertx.createHttpServer();
        return server.requestHandler(router).listen(options.port(), options.host());
    }

    public int actualPort() {
        return server.actualPort();
    }

    private Future<JsonObject> describe(DeviceHandle d) {
        JsonObject json = new JsonObject()
                .put("name", d.name())
                .put("flags", d.flags().toString())
                .put("identity", d.identity().toJson())
                .put("migration", d.owner());
        return d.state().map(s -> json.put("state", s.name()))
                .recover(e -> Future.succeededFuture(json.put("state", "unknown").put("error", e.getMessage())));
    }

    private void listDevices(RoutingContext rc) {
        List<Future<JsonObject>> all = new ArrayList<>();
        devices.all().forEach(d -> all.add(describe(d)));
        Future.all(all).onComplete(ar -> json(rc, 200, new JsonObject().put("agent", agent)
                .put("devices", new JsonArray(all.stream().map(Future::result).toList()))));
    }

    private void getDevice(RoutingContext rc) {
        DeviceHandle d = devices.find(rc.pathParam("name"));
        if (d == null) {
            error(rc, 404, "agent " + agent + " has no device named '" + rc.pathParam("name") + "'");
            return;
        }
        describe(d).onSuccess(json -> json(rc, 200, json));
    }

    private void startMigration(RoutingContext rc) {
        JsonObject body;
        try {
            body = rc.body().asJsonObject();
        } catch (DecodeException | ClassCastException e) {
            error(rc, 400, "the request body must be a JSON object");
            return;
        }
        if (body == null) {
            error(rc, 400, "the request body must be a JSON object");
            return;
        }
        MigrationRequest request;
        try {
            request = MigrationRequest.fromJson(body);
        } catch (IllegalArgumentException e) {
            error(rc, 400, e.getMessage());
            return;
        }
        try {
            MigrationService.Started started = migrations.migrate(request);
            rc.response().putHeader("Location", "/v1/migrations/" + started.record().id());
            json(rc, 201, started.record().toJson());
        } catch (MigrationService.Rejected e) {
            error(rc, e.status(), e.getMessage());
        }
    }

    private void getMigration(RoutingContext rc) {
        MigrationRecord r = migrations.find(rc.pathParam("id"));
        if (r == null) {
            error(rc, 404, "no migration '" + rc.pathParam("id") + "' on agent " + agent);
            return;
        }
        json(rc, 200, r.toJson());
    }

    /** Cancel or release: 202 with the migration, 404 or 409 with the reason. */
    private void control(RoutingContext rc, java.util.function.Function<String, MigrationRecord> action) {
        try {
            json(rc, 202, action.apply(rc.pathParam("id")).toJson());
        } catch (MigrationService.Rejected e) {
            error(rc, e.status(), e.getMessage());
        }
    }

    private static void json(RoutingContext rc, int status, JsonObject body) {
        rc.response().setStatusCode(status).putHeader("Content-Type", "application/json").end(body.encode());
    }

    private static void error(RoutingContext rc, int status, String message) {
        json(rc, status, new JsonObject().put("error", new JsonObject().put("status", status)
                .put("message", message)));
    }
}
