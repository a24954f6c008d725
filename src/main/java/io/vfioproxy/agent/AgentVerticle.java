package io.vfioproxy.agent;

import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.spi.cluster.hazelcast.HazelcastClusterManager;
import io.vfioproxy.api.AgentCommands;
import io.vfioproxy.api.AgentMetrics;
import io.vfioproxy.api.ApiContract;
import io.vfioproxy.api.ApiOptions;
import io.vfioproxy.api.ApiVerticle;
import io.vfioproxy.api.Events;
import io.vfioproxy.cluster.ClusterMembership;
import io.vfioproxy.cluster.ClusterOptions;
import io.vfioproxy.device.DeviceController;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.device.DeviceVerticle;
import io.vfioproxy.migration.MigrationOptions;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.relay.RelayOptions;
import io.vfioproxy.relay.RelayService;
import io.vfioproxy.security.ConnectionLimits;
import io.vfioproxy.security.Credentials;
import io.vfioproxy.security.Refusals;
import io.vfioproxy.security.SecurityOptions;
import io.vfioproxy.security.TlsMaterial;
import io.vfioproxy.transport.StreamClient;
import io.vfioproxy.transport.StreamServerVerticle;
import io.vfioproxy.transport.TransportOptions;
import io.vfioproxy.transport.WebSocketStreamEndpoint;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * One node agent: opens its devices (one {@link DeviceVerticle} each), then serves the stream endpoint, the
 * event-bus commands and the HTTP API. Undeploying it closes everything it opened. Several agents can share one
 * Vert.x (the demo does).
 */
public final class AgentVerticle extends VerticleBase {

    private static final System.Logger LOG = System.getLogger("io.vfioproxy.agent");
    /** How often readiness is checked for the vmp_agent_ready gauge. */
    private static final long READINESS_MILLIS = 5000;

    private final JsonObject config;
    private final PrometheusMeterRegistry registry;
    private final HazelcastClusterManager clusterManager;
    private ClusterMembership membership;
    private String name;
    private int configuredDevices;
    private DeviceRegistry devices;
    private MigrationService migrations;
    private RelayService relays;
    private StreamClient connector;
    private final List<StreamServerVerticle> streamServers = new java.util.concurrent.CopyOnWriteArrayList<>();
    private ApiVerticle api;
    private AgentCommands commands;
    private ApiContract contract;
    private volatile boolean started;
    private AgentMetrics metrics;
    private long readinessTimer = -1;
    private Credentials credentials;
    private final java.util.Map<String, String> failedDevices = new java.util.concurrent.ConcurrentHashMap<>();

    /**
     * @param registry where the agent's meters go; the one Vert.x reports to ({@link AgentVertx}) so a scrape
     *        shows both
     */
    public AgentVerticle(JsonObject config, PrometheusMeterRegistry registry) {
        this(config, registry, null);
    }

    /**
     * @param cluster the cluster manager of the clustered Vert.x this agent runs on ({@link AgentVertx}), or null
     */
    public AgentVerticle(JsonObject config, PrometheusMeterRegistry registry, HazelcastClusterManager cluster) {
        this.config = config;
        this.registry = registry;
        this.clusterManager = cluster;
    }

    /** An agent with a registry of its own (Vert.x's meters then go elsewhere, or nowhere). */
    public AgentVerticle(JsonObject config) {
        this(config, new PrometheusMeterRegistry(PrometheusConfig.DEFAULT));
    }

    @Override
    public Future<?> start() {
        JsonObject agent = config.getJsonObject("agent", new JsonObject());
        name = agent.getString("name");
        if (name == null || name.isBlank()) {
            return Future.failedFuture(new IllegalArgumentException("agent.name is required: the name this agent "
                    + "goes by (in Kubernetes, the node's: VMP_AGENT_NAME from spec.nodeName)"));
        }
        SecurityOptions security;
        try {
            security = SecurityOptions.fromJson(config.getJsonObject("security"));
        } catch (IllegalArgumentException e) {
            return Future.failedFuture(e);
        }
        if (security.insecure()) {
            LOG.log(System.Logger.Level.WARNING, "agent " + name + " runs IN THE CLEAR (security.insecure): anyone "
                    + "who reaches its ports can write device state, start migrations and read its status");
        } else {
            LOG.log(System.Logger.Level.INFO, "agent " + name + ": TLS engine " + TlsMaterial.engineName());
        }
        // Every credential file is read before anything listens: a missing one stops the agent, naming it.
        return Credentials.load(vertx, security).compose(c -> {
            credentials = c;
            credentials.startReloading(vertx);
            return serve();
        });
    }

    private Future<?> serve() {
        TransportOptions transport = TransportOptions.fromJson(config.getJsonObject("stream"));
        MigrationOptions options = MigrationOptions.fromJson(config.getJsonObject("migration"))
                .withHandshakeTimeout(transport.handshakeTimeoutMillis());
        ApiOptions apiOptions = ApiOptions.fromJson(config.getJsonObject("api"));
        metrics = new AgentMetrics(registry, name);
        Refusals refusals = new Refusals(name);
        ConnectionLimits limits = new ConnectionLimits("stream", transport.maxConnections(),
                transport.maxConnectionsPerPeer());
        devices = new DeviceRegistry();
        connector = new StreamClient(vertx, transport, credentials);
        migrations = new MigrationService(vertx, name, devices, connector, options, metrics,
                event -> vertx.eventBus().publish(Events.MIGRATION, event),
                event -> vertx.eventBus().publish(Events.PROGRESS, event));
        relays = new RelayService(vertx, name, connector, RelayOptions.fromJson(config.getJsonObject("relay")),
                options.limits(), metrics, event -> vertx.eventBus().publish(Events.RELAY, event));
        // What a connection opens, a migration, a device connection of one or a relay channel, its first frame says.
        ConnectionRouter connections = new ConnectionRouter(vertx, migrations::accept, migrations::join,
                relays::accept, transport.handshakeTimeoutMillis());
        DeviceController.TransitionListener deviceEvents = metrics.deviceListener((device, from, to, cause, nanos) ->
                vertx.eventBus().publish(Events.DEVICE_STATE, Events.deviceState(name, device, from, to, cause, nanos)));

        List<Future<String>> opened = new ArrayList<>();
        JsonArray list = config.getJsonArray("devices", new JsonArray());
        configuredDevices = list.size();
        for (int i = 0; i < list.size(); i++) {
            JsonObject entry = list.getJsonObject(i);
            String device = entry.getString("name", "device " + i);
            // A device that cannot be opened is reported, and the agent serves the others but is not ready.
            opened.add(vertx.deployVerticle(new DeviceVerticle(name, entry, deviceEvents, devices)).recover(e -> {
                failedDevices.put(device, String.valueOf(e.getMessage()));
                LOG.log(System.Logger.Level.ERROR, "agent " + name + ": device " + device + " could not be opened: "
                        + e.getMessage());
                return Future.succeededFuture("");
            }));
        }
        // Several instances share the listening socket; Vert.x spreads connections over their event loops.
        int acceptors = config.getJsonObject("stream", new JsonObject()).getInteger("acceptors",
                Math.max(1, Runtime.getRuntime().availableProcessors()));
        Future<?> up = ApiContract.load(vertx).compose(c -> {
            contract = c;
            commands = new AgentCommands(vertx, name, devices, migrations, relays, contract, this::about);
            return Future.all(opened).onSuccess(v -> devices.all().forEach(metrics::holder));
        })
                // What a previous process of this agent left half done is put right before anything is served.
                .compose(v -> migrations.recover().onSuccess(recovered -> recovered.forEach(r ->
                        LOG.log(System.Logger.Level.WARNING, "agent " + name + ": recovered " + r.id() + ": "
                                + r.status().error()))))
                .compose(v -> vertx.deployVerticle(() -> {
                    StreamServerVerticle server = new StreamServerVerticle(transport, credentials, limits, refusals,
                            connections::accept, () -> Future.join(migrations.shutdown(), relays.shutdown()));
                    streamServers.add(server);
                    return server;
                }, new DeploymentOptions().setInstances(acceptors)))
                .compose(v -> commands.register())
                .compose(v -> {
                    if (clusterManager == null) {
                        return Future.succeededFuture();
                    }
                    membership = new ClusterMembership(vertx, name, ClusterOptions.fromJson(
                            config.getJsonObject("cluster")), clusterManager, migrations::peerLeft,
                            metrics::clusterAgents);
                    return membership.start();
                });
        if (apiOptions.enabled()) {
            // The migration stream over WebSocket rides on the API's HTTP server.
            WebSocketStreamEndpoint ws = new WebSocketStreamEndpoint(transport, credentials, limits, refusals,
                    connections::accept);
            up = up.compose(v -> {
                api = new ApiVerticle(name, apiOptions, WebSocketStreamEndpoint.configure(new HttpServerOptions()),
                        Map.of(WebSocketStreamEndpoint.PATH, ws::handle),
                        contract, devices, migrations, relays, credentials, refusals, registry, this::readiness,
                        this::clusterView);
                return vertx.deployVerticle(api);
            });
        }
        return up.onSuccess(v -> {
            started = true;
            // vmp_agent_ready follows readiness between probes too, for the alert on an agent not ready.
            readinessTimer = vertx.setPeriodic(0, READINESS_MILLIS, id -> readiness());
        });
    }

    /** Ready: every configured device open, the stream endpoint listening, the event bus answering. */
    private Future<JsonObject> readiness() {
        JsonObject checks = new JsonObject()
                .put("devices", devices.all().size() + " of " + configuredDevices + " open")
                .put("deviceErrors", new JsonObject(new java.util.TreeMap<>(failedDevices)))
                .put("stream", streamPort() > 0 ? "listening on " + streamPort() : "down");
        boolean clustered = clusterManager == null || clusterManager.isActive();
        if (clusterManager != null) {
            checks.put("cluster", clustered ? clusterManager.getNodes().size() + " member(s)" : "not a member");
        }
        boolean ready = started && clustered && devices.all().size() == configuredDevices && streamPort() > 0;
        return commands.ping()
                .map(v -> checks.put("eventBus", "up"))
                .otherwise(e -> checks.put("eventBus", "down: " + e.getMessage()))
                .map(c -> c.put("ready", ready && "up".equals(c.getString("eventBus"))))
                .andThen(ar -> metrics.ready(ar.succeeded() && ar.result().getBoolean("ready")));
    }

    /** This agent for the cluster's view: readiness and ports (the {@code agent} command adds its devices). */
    private Future<JsonObject> about() {
        return readiness().map(r -> new JsonObject().put("ready", r.getBoolean("ready", false))
                .put("streamPort", streamPort()).put("apiPort", apiPort()));
    }

    /** What GET /v1/cluster answers: the cluster's agents, or this agent alone when it is not clustered. */
    private Future<JsonObject> clusterView() {
        if (membership != null) {
            return membership.view();
        }
        return vertx.eventBus().<JsonObject>request(Events.command(name, "agent"), new JsonObject())
                .map(m -> new JsonObject().put("clustered", false).put("agent", name)
                        .put("agents", new JsonArray().add(m.body().copy().put("state", "up"))));
    }

    @Override
    public Future<?> stop() {
        if (membership != null) {
            membership.stop();
        }
        vertx.cancelTimer(readinessTimer);
        credentials.stopReloading(vertx);
        migrations.close();
        return Future.join(relays.shutdown(), relays.close()).eventually(connector::close);
    }

    /** Whether security is on: mutual TLS on the streams, HTTPS and tokens on the API. */
    public boolean secure() {
        return credentials.secure();
    }

    public String name() {
        return name;
    }

    public DeviceRegistry devices() {
        return devices;
    }

    /** Devices of the configuration that could not be opened, with why. */
    public java.util.Map<String, String> failedDevices() {
        return java.util.Map.copyOf(failedDevices);
    }

    public MigrationService migrations() {
        return migrations;
    }

    public RelayService relays() {
        return relays;
    }

    public PrometheusMeterRegistry registry() {
        return registry;
    }

    /** The port the stream endpoint listens on. */
    public int streamPort() {
        return streamServers.isEmpty() ? -1 : streamServers.get(0).actualPort();
    }

    /** The port the HTTP API listens on, or -1 when it is off. */
    public int apiPort() {
        return api == null ? -1 : api.actualPort();
    }
}
