package io.vfioproxy.testing;

import io.vertx.core.Vertx;
import io.vertx.core.eventbus.MessageConsumer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.SimulatedDevice;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.transport.StreamEndpoint;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/** Real agents on loopback for tests, in one Vert.x instance. */
public final class Agents {

    public static final int PAGE = 4096;

    private Agents() {
    }

    /** A simulated device entry. */
    public static JsonObject device(String name, long size, long seed) {
        return new JsonObject().put("name", name).put("backend", "simulated").put("size", Long.toString(size))
                .put("pageSize", PAGE).put("seed", seed).put("flags", "STOP_COPY,P2P,PRE_COPY");
    }

    /** An agent configuration: stream and API on free loopback ports. */
    public static JsonObject config(String name, JsonObject migration, JsonObject... devices) {
        return new JsonObject()
                .put("agent", new JsonObject().put("name", name))
                .put("stream", new JsonObject().put("host", "127.0.0.1").put("port", 0))
                .put("api", new JsonObject().put("host", "127.0.0.1").put("port", 0))
                .put("migration", migration)
                .put("devices", new JsonArray(List.of((Object[]) devices)));
    }

    public static AgentVerticle start(Vertx vertx, JsonObject config) {
        AgentVerticle agent = new AgentVerticle(config);
        vertx.deployVerticle(agent).await();
        return agent;
    }

    public static StreamEndpoint endpoint(AgentVerticle agent) {
        return new StreamEndpoint("127.0.0.1", agent.streamPort());
    }

    /** Starts a stop-copy migration of one device on an event-loop context, as the API does. */
    public static MigrationService.Started migrate(Vertx vertx, AgentVerticle source, String device,
            StreamEndpoint destination, String targetDevice) {
        return migrate(vertx, source, new MigrationRequest(device, destination, targetDevice, 0));
    }

    /** Starts a migration, as the API does; it runs on an event-loop context of its own. */
    public static MigrationService.Started migrate(Vertx vertx, AgentVerticle source, MigrationRequest request) {
        return source.migrations().migrate(request);
    }

    public static SimulatedDevice simulated(DeviceHandle handle) {
        return handle.submit(c -> (SimulatedDevice) c.device()).await();
    }

    public static long digest(DeviceHandle handle) {
        return handle.submit(c -> ((SimulatedDevice) c.device()).stateDigest()).await();
    }

    /** Collects every message published to {@code address}. */
    public static List<JsonObject> record(Vertx vertx, String address) {
        List<JsonObject> events = new CopyOnWriteArrayList<>();
        MessageConsumer<JsonObject> consumer = vertx.eventBus().consumer(address, m -> events.add(m.body()));
        consumer.completion().await();
        return events;
    }
}
