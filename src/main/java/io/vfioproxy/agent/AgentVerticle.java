package io.vfioproxy.agent;

import io.vertx.core.DeploymentOptions;
import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.api.ApiOptions;
import io.vfioproxy.api.ApiVerticle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.device.DeviceVerticle;
import io.vfioproxy.migration.MigrationOptions;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.transport.StreamServerVerticle;
import io.vfioproxy.transport.TcpConnector;
import io.vfioproxy.transport.TransportOptions;
import java.util.ArrayList;
import java.util.List;

/**
 * One node agent: opens its devices (one {@link DeviceVerticle} each), then serves the stream endpoint and the
 * HTTP API. Undeploying it closes everything it opened. Several agents can share one Vert.x (the demo does).
 */
public final class AgentVerticle extends VerticleBase {

    private final JsonObject config;
    private String name;
    private DeviceRegistry devices;
    private MigrationService migrations;
    private TcpConnector connector;
    private StreamServerVerticle streamServer;
    private ApiVerticle api;

    public AgentVerticle(JsonObject config) {
        this.config = config;
    }

    @Override
    public Future<?> start() {
        JsonObject agent = config.getJsonObject("agent", new JsonObject());
        name = agent.getString("name", System.getenv().getOrDefault("HOSTNAME", "agent"));
        TransportOptions transport = TransportOptions.fromJson(config.getJsonObject("stream"));
        MigrationOptions options = MigrationOptions.fromJson(config.getJsonObject("migration"));
        ApiOptions apiOptions = ApiOptions.fromJson(config.getJsonObject("api"));
        devices = new DeviceRegistry();
        connector = new TcpConnector(vertx, transport);
        migrations = new MigrationService(vertx, name, devices, connector, options);

        List<Future<String>> opened = new ArrayList<>();
        JsonArray list = config.getJsonArray("devices", new JsonArray());
        for (int i = 0; i < list.size(); i++) {
            opened.add(vertx.deployVerticle(new DeviceVerticle(name, list.getJsonObject(i), devices::add),
                    new DeploymentOptions()));
        }
        streamServer = new StreamServerVerticle(transport, migrations::accept);
        Future<?> started = Future.all(opened)
                .compose(v -> vertx.deployVerticle(streamServer));
        if (apiOptions.enabled()) {
            api = new ApiVerticle(name, apiOptions, devices, migrations);
            started = started.compose(v -> vertx.deployVerticle(api));
        }
        return started;
    }

    @Override
    public Future<?> stop() {
        return connector.close();
    }

    public String name() {
        return name;
    }

    public DeviceRegistry devices() {
        return devices;
    }

    public MigrationService migrations() {
        return migrations;
    }

    /** The port the stream endpoint listens on. */
    public int streamPort() {
        return streamServer.actualPort();
    }

    /** The port the HTTP API listens on, or -1 when it is off. */
    public int apiPort() {
        return api == null ? -1 : api.actualPort();
    }
}
