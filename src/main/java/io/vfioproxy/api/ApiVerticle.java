package io.vfioproxy.api;

import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.eventbus.MessageConsumer;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.ServerWebSocket;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.bridge.PermittedOptions;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import io.vertx.ext.web.handler.sockjs.SockJSBridgeOptions;
import io.vertx.ext.web.handler.sockjs.SockJSHandler;
import io.vertx.micrometer.PrometheusScrapingHandler;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.migration.MigrationEvents.Lifecycle;
import io.vfioproxy.migration.MigrationRecord;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.migration.MigrationStatus;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.Predicate;
import java.util.function.Supplier;

/**
 * The agent's HTTP server: the API (version 1, described by {@code /v1/openapi.json}), health for Kubernetes
 * probes, the Prometheus scrape, WebSocket event feeds and a SockJS event-bus bridge, read-only unless configured;
 * and what the agent mounts besides (the migration stream over WebSocket). Errors are
 * {@code {"error": {"status": N, "message": "..."}}}.
 */
public final class ApiVerticle extends VerticleBase {

    /** What the event feeds send, by event-bus address. */
    private static final List<String[]> FEEDS = List.of(
            new String[] {Events.DEVICE_STATE, "device-state"},
            new String[] {Events.MIGRATION, "migration"},
            new String[] {Events.PROGRESS, "progress"});

    private final String agent;
    private final ApiOptions options;
    private final HttpServerOptions serverOptions;
    private final Consumer<Router> mounts;
    private final DeviceRegistry devices;
    private final MigrationService migrations;
    private final PrometheusMeterRegistry registry;
    private final Supplier<Future<JsonObject>> readiness;
    private final ApiContract contract;
    private HttpServer server;

    /**
     * @param serverOptions the HTTP server's options (the agent's mounts may need more than the defaults)
     * @param mounts adds the agent's own routes to the router, before the catch-all 404
     */
    public ApiVerticle(String agent, ApiOptions options, HttpServerOptions serverOptions, Consumer<Router> mounts,
            ApiContract contract, DeviceRegistry devices, MigrationService migrations, PrometheusMeterRegistry registry,
            Supplier<Future<JsonObject>> readiness) {
        this.agent = agent;
        this.contract = contract;
        this.options = options;
        this.serverOptions = serverOptions;
        this.mounts = mounts;
        this.devices = devices;
        this.migrations = migrations;
        this.registry = registry;
        this.readiness = readiness;
    }

    /**
     * Before the HTTP server closes its connections, ends the migrations streamed over its WebSocket endpoint, so
     * each says why it ended and leaves its devices safe.
     */
    @Override
    public Future<?> stop() {
        return migrations.shutdown();
    }

    @Override
    public Future<?> start() {
        Router router = Router.router(vertx);
        router.get("/healthz").handler(rc -> json(rc, 200, new JsonObject().put("status", "UP").put("agent", agent)));
        router.get("/readyz").handler(this::ready);
        router.get("/metrics").handler(PrometheusScrapingHandler.create(registry));
        router.get("/v1/openapi.json").handler(rc -> rc.response().putHeader("Content-Type", "application/json")
                .end(contract.document()));
        router.get("/v1/devices").handler(this::listDevices);
        router.get("/v1/devices/:name").handler(this::getDevice);
        router.post("/v1/devices/:name/release").handler(BodyHandler.create().setBodyLimit(4096))
                .handler(this::releaseDevice);
        router.post("/v1/migrations").handler(BodyHandler.create().setBodyLimit(64 * 1024)).handler(this::startMigration);
        router.get("/v1/migrations").handler(rc -> json(rc, 200, new JsonObject().put("migrations",
                new JsonArray(migrations.all().stream().map(MigrationRecord::toJson).toList()))));
        router.get("/v1/migrations/:id").handler(this::getMigration);
        router.post("/v1/migrations/:id/cancel").handler(rc -> control(rc, migrations::cancel));
        router.post("/v1/migrations/:id/switchover").handler(rc -> control(rc, migrations::release));
        router.get("/v1/events").handler(rc -> feed(rc, e -> agent.equals(e.getString("agent")), null));
        router.get("/v1/migrations/:id/events").handler(this::migrationFeed);
        mounts.accept(router);
        SockJSBridgeOptions bridge = new SockJSBridgeOptions();
        FEEDS.forEach(f -> bridge.addOutboundPermitted(new PermittedOptions().setAddress(f[0])));
        options.bridgeInbound().forEach(a -> bridge.addInboundPermitted(new PermittedOptions().setAddress(a)));
        router.route("/eventbus/*").subRouter(SockJSHandler.create(vertx).bridge(bridge));
        router.route().last().handler(rc -> error(rc, 404, "no such resource: " + rc.request().method() + " "
                + rc.request().path()));
        router.route().failureHandler(rc -> error(rc, rc.statusCode() > 0 ? rc.statusCode() : 500,
                rc.failure() == null ? "request failed" : rc.failure().getMessage()));
        server = vertx.createHttpServer(new HttpServerOptions(serverOptions).setHost(options.host())
                .setPort(options.port()));
        return server.requestHandler(router).listen();
    }

    public int actualPort() {
        return server.actualPort();
    }

    private void ready(RoutingContext rc) {
        readiness.get().onComplete(ar -> {
            JsonObject checks = ar.succeeded() ? ar.result() : new JsonObject().put("ready", false)
                    .put("error", ar.cause().getMessage());
            json(rc, checks.getBoolean("ready", false) ? 200 : 503, checks.put("agent", agent));
        });
    }

    private void listDevices(RoutingContext rc) {
        List<Future<JsonObject>> all = new ArrayList<>();
        devices.all().forEach(d -> all.add(AgentCommands.describe(d)));
        Future.all(all).onComplete(ar -> json(rc, 200, new JsonObject().put("agent", agent)
                .put("devices", new JsonArray(all.stream().map(Future::result).toList()))));
    }

    private void getDevice(RoutingContext rc) {
        var d = devices.find(rc.pathParam("name"));
        if (d == null) {
            error(rc, 404, "agent " + agent + " has no device named '" + rc.pathParam("name") + "'");
            return;
        }
        AgentCommands.describe(d).onSuccess(json -> json(rc, 200, json));
    }

    private void releaseDevice(RoutingContext rc) {
        contract.validate(rc, "releaseDevice")
                .compose(body -> AgentCommands.release(agent, devices, rc.pathParam("name"), body))
                .onComplete(ar -> {
                    if (ar.succeeded()) {
                        json(rc, 200, ar.result());
                    } else if (ar.cause() instanceof MigrationService.Rejected e) {
                        error(rc, e.status(), e.getMessage());
                    } else if (ar.cause() instanceof IllegalArgumentException || ar.cause() instanceof DecodeException) {
                        error(rc, 400, ar.cause().getMessage());
                    } else {
                        error(rc, 500, String.valueOf(ar.cause().getMessage()));
                    }
                });
    }

    private void startMigration(RoutingContext rc) {
        contract.validate(rc, "startMigration").onComplete(ar -> {
            try {
                if (ar.failed()) {
                    throw ar.cause();
                }
                MigrationService.Started started = migrations.migrate(MigrationRequest.fromJson(ar.result()));
                rc.response().putHeader("Location", "/v1/migrations/" + started.record().id());
                json(rc, 201, started.record().toJson());
            } catch (IllegalArgumentException | DecodeException e) {
                error(rc, 400, e.getMessage());
            } catch (MigrationService.Rejected e) {
                error(rc, e.status(), e.getMessage());
            } catch (Throwable e) {
                error(rc, 500, String.valueOf(e.getMessage()));
            }
        });
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
    private void control(RoutingContext rc, Function<String, Future<MigrationRecord>> action) {
        action.apply(rc.pathParam("id")).onComplete(ar -> {
            if (ar.succeeded()) {
                json(rc, 202, ar.result().toJson());
            } else if (ar.cause() instanceof MigrationService.Rejected e) {
                error(rc, e.status(), e.getMessage());
            } else {
                error(rc, 500, String.valueOf(ar.cause().getMessage()));
            }
        });
    }

    private void migrationFeed(RoutingContext rc) {
        String id = rc.pathParam("id");
        MigrationRecord r = migrations.find(id);
        if (r == null) {
            error(rc, 404, "no migration '" + id + "' on agent " + agent);
            return;
        }
        // Device events name their migration in their cause; lifecycle and progress events carry its id.
        feed(rc, e -> agent.equals(e.getString("agent")) && (id.equals(e.getString("migration"))
                || String.valueOf(e.getString("cause")).contains(id)), r);
    }

    /**
     * A WebSocket that receives the agent's events as JSON text messages {@code {"type", "event"}}. Progress
     * events are skipped while the client lags; state and lifecycle events are always sent. A migration's feed
     * starts with the migration's current status and closes after its last event.
     */
    private void feed(RoutingContext rc, Predicate<JsonObject> filter, MigrationRecord migration) {
        rc.request().toWebSocket().onSuccess(ws -> {
            if (migration != null) {
                send(ws, "migration", migration.toJson().put("agent", agent).put("event", "status")
                        .put("migration", migration.id()));
                if (migration.status().outcome() != MigrationStatus.Outcome.ACTIVE) {
                    ws.close();
                    return;
                }
            }
            List<MessageConsumer<JsonObject>> consumers = new ArrayList<>();
            for (String[] f : FEEDS) {
                consumers.add(vertx.eventBus().<JsonObject>consumer(f[0], m -> {
                    JsonObject e = m.body();
                    if (!filter.test(e) || ("progress".equals(f[1]) && ws.writeQueueFull())) {
                        return;
                    }
                    send(ws, f[1], e);
                    Lifecycle event = Lifecycle.of(e.getString("event"));
                    if (migration != null && "migration".equals(f[1]) && event != null && event.isEnd()
                            && e.getString("role").equals(migration.role().name().toLowerCase())) {
                        ws.close();
                    }
                }));
            }
            ws.closeHandler(v -> consumers.forEach(MessageConsumer::unregister));
        });
    }

    private static void send(ServerWebSocket ws, String type, JsonObject event) {
        if (!ws.isClosed()) {
            ws.writeTextMessage(new JsonObject().put("type", type).put("event", event).encode());
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
