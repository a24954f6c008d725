package io.vfioproxy.api;

import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.VerticleBase;
import io.vertx.core.eventbus.DeliveryOptions;
import io.vertx.core.eventbus.MessageConsumer;
import io.vertx.core.eventbus.ReplyException;
import io.vertx.core.http.ClientAuth;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.ServerWebSocket;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.bridge.BridgeEventType;
import io.vertx.ext.bridge.PermittedOptions;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import io.vertx.ext.web.handler.StaticHandler;
import io.vertx.ext.web.handler.sockjs.SockJSBridgeOptions;
import io.vertx.ext.web.handler.sockjs.SockJSHandler;
import io.vertx.micrometer.PrometheusScrapingHandler;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.migration.MigrationEvents.Lifecycle;
import io.vfioproxy.migration.MigrationRecord;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.migration.MigrationStatus;
import io.vfioproxy.relay.RelayRecord;
import io.vfioproxy.relay.RelayRequest;
import io.vfioproxy.relay.RelayService;
import io.vfioproxy.security.ConnectionLimits;
import io.vfioproxy.security.Credentials;
import io.vfioproxy.security.Refusals;
import io.vfioproxy.security.Scope;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.function.Predicate;
import java.util.function.Supplier;

/**
 * The agent's HTTP server: the API (version 1, described by {@code /v1/openapi.json}), health for Kubernetes
 * probes, the Prometheus scrape, WebSocket event feeds and a SockJS event-bus bridge, read-only unless configured;
 * and what the agent serves besides (the migration stream over WebSocket). Errors are
 * {@code {"error": {"status": N, "message": "..."}}}.
 */
public final class ApiVerticle extends VerticleBase {

    /** What the event feeds send, by event-bus address. */
    private static final List<String[]> FEEDS = List.of(
            new String[] {Events.DEVICE_STATE, "device-state"},
            new String[] {Events.MIGRATION, "migration"},
            new String[] {Events.PROGRESS, "progress"},
            new String[] {Events.RELAY, "relay"},
            new String[] {Events.CLUSTER, "cluster"});
    /** How long a request routed to another agent of the cluster may wait for its answer. */
    private static final long ROUTE_MILLIS = 30_000;

    /** The page loads only its own files, and talks only to this agent (its API and its WebSocket feed). */
    private static final String PAGE_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; "
            + "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

    private final String agent;
    private final ApiOptions options;
    private final HttpServerOptions serverOptions;
    private final Map<String, Handler<HttpServerRequest>> ahead;
    private final DeviceRegistry devices;
    private final MigrationService migrations;
    private final RelayService relays;
    private final Credentials credentials;
    private final Authenticator auth;
    private final Refusals refusals;
    private final PrometheusMeterRegistry registry;
    private final Supplier<Future<JsonObject>> readiness;
    private final ApiContract contract;
    private final Supplier<Future<JsonObject>> cluster;
    private HttpServer server;

    /**
     * @param serverOptions the HTTP server's options (what the agent serves besides may need more than the defaults)
     * @param ahead the agent's own GET handlers by path, served ahead of the router and its tokens: the migration
     *     stream's WebSocket, whose agents prove themselves with their certificate, and whose frames the router's
     *     request and WebSocket wrappers would hide from the stream's direct input
     * @param cluster what {@code GET /v1/cluster} answers
     */
    public ApiVerticle(String agent, ApiOptions options, HttpServerOptions serverOptions,
            Map<String, Handler<HttpServerRequest>> ahead,
            ApiContract contract, DeviceRegistry devices, MigrationService migrations, RelayService relays,
            Credentials credentials, Refusals refusals, PrometheusMeterRegistry registry,
            Supplier<Future<JsonObject>> readiness, Supplier<Future<JsonObject>> cluster) {
        this.cluster = cluster;
        this.relays = relays;
        this.credentials = credentials;
        this.auth = new Authenticator(agent, credentials, refusals);
        this.refusals = refusals;
        this.agent = agent;
        this.contract = contract;
        this.options = options;
        this.serverOptions = serverOptions;
        this.ahead = Map.copyOf(ahead);
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
        return Future.join(migrations.shutdown(), relays.shutdown());
    }

    @Override
    public Future<?> start() {
        Router router = Router.router(vertx);
        router.get("/healthz").handler(rc -> json(rc, 200, new JsonObject().put("status", "UP").put("agent", agent)));
        router.get("/readyz").handler(this::ready);
        // The operators' page: static files only, no data; the page asks for a token and reads the API with it.
        router.get("/").handler(rc -> rc.reroute("/ui/index.html"));
        router.route("/ui/*").method(HttpMethod.GET).handler(rc -> {
            rc.response().putHeader("Content-Security-Policy", PAGE_POLICY).putHeader("X-Content-Type-Options",
                    "nosniff").putHeader("Referrer-Policy", "no-referrer");
            rc.next();
        }).handler(StaticHandler.create("webroot").setCachingEnabled(false).setDirectoryListing(false));
        if (credentials.options().metricsPublic()) {
            router.get("/metrics").handler(PrometheusScrapingHandler.create(registry));
        }
        // Everything below needs a token: read to look, control to act.
        router.route().handler(auth::handle);
        if (!credentials.options().metricsPublic()) {
            router.get("/metrics").handler(PrometheusScrapingHandler.create(registry));
        }
        router.get("/v1/openapi.json").handler(rc -> rc.response().putHeader("Content-Type", "application/json")
                .end(contract.document()));
        router.get("/v1/session").handler(this::session);
        router.get("/v1/cluster").handler(rc -> cluster.get().onComplete(ar -> {
            if (ar.succeeded()) {
                json(rc, 200, ar.result());
            } else {
                error(rc, 500, "the cluster's view failed: " + ar.cause().getMessage());
            }
        }));
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
        router.post("/v1/relays").handler(BodyHandler.create().setBodyLimit(16 * 1024)).handler(this::startRelay);
        router.get("/v1/relays").handler(rc -> json(rc, 200, new JsonObject().put("relays",
                new JsonArray(relays.all().stream().map(RelayRecord::toJson).toList()))));
        router.get("/v1/relays/:id").handler(this::getRelay);
        router.post("/v1/relays/:id/cancel").handler(rc -> relays.cancel(rc.pathParam("id")).onComplete(ar -> {
            if (ar.succeeded()) {
                json(rc, 202, ar.result().toJson());
            } else {
                failed(rc, ar.cause());
            }
        }));
        router.get("/v1/events").handler(rc -> {
            // On a clustered event bus every agent's events arrive here; the agent's own feed keeps to its own.
            String scope = rc.request().getParam("scope", "agent");
            if (!scope.equals("agent") && !scope.equals("cluster")) {
                error(rc, 400, "scope '" + scope + "': agent (this agent's events) or cluster (every agent's)");
                return;
            }
            feed(rc, scope.equals("cluster") ? e -> true : e -> agent.equals(e.getString("agent")), null, null, null);
        });
        router.get("/v1/migrations/:id/events").handler(this::migrationFeed);
        router.get("/v1/relays/:id/events").handler(this::relayFeed);
        SockJSBridgeOptions bridge = new SockJSBridgeOptions();
        FEEDS.forEach(f -> bridge.addOutboundPermitted(new PermittedOptions().setAddress(f[0])));
        options.bridgeInbound().forEach(a -> bridge.addInboundPermitted(new PermittedOptions().setAddress(a)));
        // Receiving needs a read token (checked above, for every SockJS request); sending a command, a control one.
        router.route("/eventbus/*").subRouter(SockJSHandler.create(vertx).bridge(bridge, event -> {
            boolean sends = event.type() == BridgeEventType.SEND || event.type() == BridgeEventType.PUBLISH;
            event.complete(!sends || auth.scope(event.socket()) == Scope.CONTROL);
        }));
        router.route().last().handler(rc -> error(rc, 404, "no such resource: " + rc.request().method() + " "
                + rc.request().path()));
        router.route().failureHandler(rc -> error(rc, rc.statusCode() > 0 ? rc.statusCode() : 500,
                rc.failure() == null ? "request failed" : rc.failure().getMessage()));
        HttpServerOptions http = new HttpServerOptions(serverOptions).setHost(options.host()).setPort(options.port());
        if (credentials.secure()) {
            // The API's users prove themselves with tokens; the WebSocket stream's agents with their certificate,
            // which is asked for (and checked against the CA) on every connection.
            credentials.tls().apply(http, ClientAuth.REQUEST);
        }
        server = vertx.createHttpServer(http);
        ConnectionLimits limits = new ConnectionLimits("api", options.maxConnections(),
                options.maxConnectionsPerPeer());
        server.connectionHandler(connection -> {
            String peer = connection.remoteAddress() == null ? "?" : connection.remoteAddress().hostAddress();
            ConnectionLimits.Permit permit = limits.admit("an API connection", peer, refusals);
            if (permit == null) {
                connection.close();
                return;
            }
            connection.closeHandler(v -> permit.release());
        });
        credentials.onTlsChange(tls -> server.updateSSLOptions(tls.server(ClientAuth.REQUEST)));
        return server.requestHandler(request -> {
            Handler<HttpServerRequest> own = request.method() == HttpMethod.GET ? ahead.get(request.path()) : null;
            if (own != null) {
                own.handle(request);
            } else {
                router.handle(request);
            }
        }).listen();
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

    /** Who the caller is to this agent: the scope of its token (the page shows control buttons only for control). */
    private void session(RoutingContext rc) {
        Scope scope = credentials.secure() ? credentials.tokens().scope(Authenticator.token(rc.request()))
                : Scope.CONTROL;
        json(rc, 200, new JsonObject().put("agent", agent).put("secure", credentials.secure())
                .put("scope", scope.wireName()));
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
                String owner = Routing.migrationOwner(agent, ar.result());
                if (owner != null) {
                    routed(rc, owner, "migrate", ar.result());
                    return;
                }
                MigrationService.Started started = migrations.migrate(MigrationRequest.fromJson(
                        Routing.local(agent, ar.result())));
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

    private void startRelay(RoutingContext rc) {
        contract.validate(rc, "startRelay").onComplete(valid -> {
            if (valid.failed()) {
                failed(rc, valid.cause());
                return;
            }
            JsonObject body = valid.result();
            String owner = Routing.relayOwner(agent, body);
            if (owner != null) {
                routed(rc, owner, "relay", body);
                return;
            }
            Future<RelayRecord> started;
            try {
                started = relays.start(RelayRequest.fromJson(Routing.localRelay(body)));
            } catch (RuntimeException e) {
                failed(rc, e);
                return;
            }
            started.onComplete(ar -> {
                if (ar.succeeded()) {
                    rc.response().putHeader("Location", "/v1/relays/" + ar.result().id());
                    json(rc, 201, ar.result().toJson());
                } else {
                    failed(rc, ar.cause());
                }
            });
        });
    }

    private void getRelay(RoutingContext rc) {
        RelayRecord r = relays.find(rc.pathParam("id"));
        if (r == null) {
            error(rc, 404, "no relay '" + rc.pathParam("id") + "' on agent " + agent);
            return;
        }
        json(rc, 200, r.toJson());
    }

    /**
     * Sends {@code command} to agent {@code owner} over the clustered event bus and answers with its reply (201),
     * or its refusal with the status it gave; 404 for an agent the cluster does not have, 504 for one that does
     * not answer.
     */
    private void routed(RoutingContext rc, String owner, String command, JsonObject body) {
        vertx.eventBus().<JsonObject>request(Events.command(owner, command), body,
                new DeliveryOptions().setSendTimeout(ROUTE_MILLIS)).onComplete(ar -> {
                    if (ar.succeeded()) {
                        json(rc, 201, ar.result().body());
                        return;
                    }
                    if (!(ar.cause() instanceof ReplyException e)) {
                        error(rc, 502, "routing to agent " + owner + " failed: " + ar.cause().getMessage());
                        return;
                    }
                    switch (e.failureType()) {
                        case NO_HANDLERS -> error(rc, 404, "no agent '" + owner + "' in the cluster of agent " + agent);
                        case TIMEOUT -> error(rc, 504, "agent " + owner + " did not answer within " + ROUTE_MILLIS
                                + " ms");
                        default -> error(rc, e.failureCode() >= 400 && e.failureCode() < 600 ? e.failureCode() : 502,
                                e.getMessage());
                    }
                });
    }

    /** A refused or failed request: 400, 404, 409 as the service says, 500 for anything unforeseen. */
    private static void failed(RoutingContext rc, Throwable cause) {
        if (cause instanceof RelayService.Rejected e) {
            error(rc, e.status(), e.getMessage());
        } else if (cause instanceof MigrationService.Rejected e) {
            error(rc, e.status(), e.getMessage());
        } else if (cause instanceof IllegalArgumentException || cause instanceof DecodeException) {
            error(rc, 400, cause.getMessage());
        } else {
            error(rc, 500, String.valueOf(cause.getMessage()));
        }
    }

    private void relayFeed(RoutingContext rc) {
        String id = rc.pathParam("id");
        RelayRecord r = relays.find(id);
        if (r == null) {
            error(rc, 404, "no relay '" + id + "' on agent " + agent);
            return;
        }
        feed(rc, e -> agent.equals(e.getString("agent")) && id.equals(e.getString("relay")),
                new String[] {"relay", "relay"},
                () -> r.toJson().put("agent", agent).put("event", "status").put("relay", id).put("terminal",
                        r.status().phase().isTerminal()),
                (type, e) -> "relay".equals(type) && RELAY_ENDS.contains(e.getString("event")));
    }

    private static final java.util.Set<String> RELAY_ENDS = java.util.Set.of("completed", "failed", "cancelled");

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
                || String.valueOf(e.getString("cause")).contains(id)), new String[] {"migration"},
                () -> r.toJson().put("agent", agent).put("event", "status").put("migration", r.id())
                        .put("terminal", r.status().outcome() != MigrationStatus.Outcome.ACTIVE),
                (type, e) -> {
                    Lifecycle event = Lifecycle.of(e.getString("event"));
                    return "migration".equals(type) && event != null && event.isEnd()
                            && e.getString("role").equals(r.role().name().toLowerCase());
                });
    }

    /**
     * A WebSocket that receives the agent's events as JSON text messages {@code {"type", "event"}}. Progress
     * events are skipped while the client lags; state and lifecycle events are always sent. A migration's or a
     * relay's feed starts with its current status ({@code initial}, of type {@code initialType[0]}) and closes after
     * its last event ({@code last}).
     */
    private void feed(RoutingContext rc, Predicate<JsonObject> filter, String[] initialType,
            Supplier<JsonObject> initial,
            java.util.function.BiPredicate<String, JsonObject> last) {
        rc.request().toWebSocket().onSuccess(ws -> {
            List<MessageConsumer<JsonObject>> consumers = new ArrayList<>();
            for (String[] f : FEEDS) {
                consumers.add(vertx.eventBus().<JsonObject>consumer(f[0], m -> {
                    JsonObject e = m.body();
                    boolean progress = "progress".equals(f[1]) || "progress".equals(e.getString("event"));
                    if (!filter.test(e) || (progress && ws.writeQueueFull())) {
                        return;
                    }
                    send(ws, f[1], e);
                    if (last != null && last.test(f[1], e)) {
                        ws.close();
                    }
                }));
            }
            ws.closeHandler(v -> consumers.forEach(MessageConsumer::unregister));
            // The status is read after the consumers listen: an end that came before is in it, one that comes
            // after reaches them (their messages are delivered after this handler returns, so after the status).
            if (initial != null) {
                JsonObject status = initial.get();
                boolean ended = Boolean.TRUE.equals(status.remove("terminal"));
                send(ws, initialType[0], status);
                if (ended) {
                    ws.close();
                }
            }
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
