package io.vfioproxy.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vertx.ext.web.client.WebClientOptions;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.testing.NoBufferLeaks;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The HTTP API of a running agent, through a real HTTP client. */
@ExtendWith(NoBufferLeaks.class)
class ApiIT {

    private Vertx vertx;
    private AgentVerticle source;
    private AgentVerticle destination;
    private WebClient client;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        destination = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 64 << 20, 2)).start(vertx);
        source = LoopbackAgent.named("src")
                .device(LoopbackAgent.simulated("gpu0", 64 << 20, 1))
                .device(LoopbackAgent.simulated("big", 512L << 20, 3)).start(vertx);
        client = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                .setDefaultPort(source.apiPort()));
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    private JsonObject request(String destinationDevice, String device) {
        return new JsonObject().put("device", device).put("targetDevice", destinationDevice)
                .put("destination", "127.0.0.1:" + destination.streamPort());
    }

    private static String errorMessage(HttpResponse<Buffer> response) {
        return response.bodyAsJsonObject().getJsonObject("error").getString("message");
    }

    @Test
    void startsAndFollowsAMigration() {
        HttpResponse<Buffer> created = client.post("/v1/migrations").sendJsonObject(request("gpu0", "gpu0")).await();
        assertThat(created.statusCode()).isEqualTo(201);
        String id = created.bodyAsJsonObject().getString("id");
        assertThat(created.getHeader("Location")).isEqualTo("/v1/migrations/" + id);
        await("the migration completes").atMost(Duration.ofSeconds(20)).until(() -> "completed".equals(
                client.get("/v1/migrations/" + id).send().await().bodyAsJsonObject().getString("outcome")));
        JsonObject status = client.get("/v1/migrations/" + id).send().await().bodyAsJsonObject();
        assertThat(status.getString("role")).isEqualTo("source");
        assertThat(status.getLong("dataBytes")).isEqualTo(status.getLong("stateSize"));
        assertThat(status.getDouble("downtimeMillis")).isPositive();
        assertThat(status.getString("deviceState")).isEqualTo("STOP");
        assertThat(client.get("/v1/migrations").send().await().bodyAsJsonObject().getJsonArray("migrations"))
                .hasSize(1);
        JsonObject device = client.get("/v1/devices/gpu0").send().await().bodyAsJsonObject();
        assertThat(device.getString("state")).isEqualTo("STOP");
        assertThat(device.getString("flags")).isEqualTo("STOP_COPY,P2P,PRE_COPY");
        assertThat(device.getJsonObject("identity").getString("model")).isEqualTo("sim-4096x16384");
    }

    @Test
    void listsDevicesWithTheirStates() {
        JsonObject body = client.get("/v1/devices").send().await().bodyAsJsonObject();
        assertThat(body.getString("agent")).isEqualTo("src");
        assertThat(body.getJsonArray("devices")).hasSize(2);
        assertThat(body.getJsonArray("devices").getJsonObject(0).getString("name")).isEqualTo("big");
        assertThat(body.getJsonArray("devices").getJsonObject(0).getString("state")).isEqualTo("RUNNING");
        assertThat(client.get("/healthz").send().await().bodyAsJsonObject().getString("status")).isEqualTo("UP");
    }

    @Test
    void answersErrorsWithTheRightStatusAndAStableShape() {
        HttpResponse<Buffer> unknownDevice = client.post("/v1/migrations").sendJsonObject(request("gpu0", "nope"))
                .await();
        assertThat(unknownDevice.statusCode()).isEqualTo(404);
        assertThat(unknownDevice.bodyAsJsonObject().getJsonObject("error").getInteger("status")).isEqualTo(404);
        assertThat(errorMessage(unknownDevice)).isEqualTo("agent src has no device named 'nope'");

        HttpResponse<Buffer> notJson = client.post("/v1/migrations").sendBuffer(Buffer.buffer("{oops")).await();
        assertThat(notJson.statusCode()).isEqualTo(400);
        assertThat(errorMessage(notJson)).isEqualTo("the request body must be a JSON object");

        HttpResponse<Buffer> noDestination = client.post("/v1/migrations")
                .sendJsonObject(new JsonObject().put("device", "gpu0")).await();
        assertThat(noDestination.statusCode()).isEqualTo(400);
        assertThat(errorMessage(noDestination)).isEqualTo("invalid request: the body: Instance does not have required "
                + "property \"destination\"");

        // The OpenAPI document's schema checks every field: its type, its values, no field it does not name.
        HttpResponse<Buffer> badFields = client.post("/v1/migrations").sendJsonObject(new JsonObject()
                .put("device", 7).put("destination", "127.0.0.1:1").put("mode", "fast").put("downtimeLimitMs", 5))
                .await();
        assertThat(badFields.statusCode()).isEqualTo(400);
        assertThat(errorMessage(badFields)).startsWith("invalid request: ")
                .contains("/device: Instance type number is invalid. Expected string")
                .contains("/mode: ").contains("/downtimeLimitMs: no such property");
        assertThat(source.migrations().all()).isEmpty();

        HttpResponse<Buffer> badDestination = client.post("/v1/migrations")
                .sendJsonObject(new JsonObject().put("device", "gpu0").put("destination", "nowhere")).await();
        assertThat(badDestination.statusCode()).isEqualTo(400);
        assertThat(errorMessage(badDestination)).isEqualTo("destination 'nowhere' is not host:port or ws://host:port");

        assertThat(client.get("/v1/migrations/m-nope").send().await().statusCode()).isEqualTo(404);
        assertThat(client.get("/v1/devices/nope").send().await().statusCode()).isEqualTo(404);
        HttpResponse<Buffer> noRoute = client.get("/v2/anything").send().await();
        assertThat(noRoute.statusCode()).isEqualTo(404);
        assertThat(errorMessage(noRoute)).isEqualTo("no such resource: GET /v2/anything");
    }

    @Test
    void aDeviceAlreadyMigratingIsAConflict() {
        // A destination that accepts the connection and never answers holds the first migration in its handshake.
        int silent = vertx.createNetServer().connectHandler(socket -> { }).listen(0, "127.0.0.1").await().actualPort();
        JsonObject toSilent = new JsonObject().put("device", "big").put("destination", "127.0.0.1:" + silent);
        HttpResponse<Buffer> first = client.post("/v1/migrations").sendJsonObject(toSilent).await();
        assertThat(first.statusCode()).isEqualTo(201);
        String id = first.bodyAsJsonObject().getString("id");
        HttpResponse<Buffer> second = client.post("/v1/migrations").sendJsonObject(toSilent).await();
        assertThat(second.statusCode()).isEqualTo(409);
        assertThat(errorMessage(second)).isEqualTo("device big is busy with migration " + id);
        JsonObject device = client.get("/v1/devices/big").send().await().bodyAsJsonObject();
        assertThat(device.getString("migration")).isEqualTo(id);
        assertThat(device.getString("state")).isEqualTo("RUNNING");
    }

    @Test
    void aRefusedMigrationReportsTheReasonAndFreesTheDevice() {
        HttpResponse<Buffer> first = client.post("/v1/migrations").sendJsonObject(request("gpu0", "big")).await();
        assertThat(first.statusCode()).isEqualTo(201);
        String id = first.bodyAsJsonObject().getString("id");
        await("the refused migration ends").atMost(Duration.ofSeconds(10)).until(() -> "failed".equals(
                client.get("/v1/migrations/" + id).send().await().bodyAsJsonObject().getString("outcome")));
        JsonObject failed = client.get("/v1/migrations/" + id).send().await().bodyAsJsonObject();
        assertThat(failed.getString("error")).contains("the destination refused the migration")
                .contains("cannot load the state of big");
        assertThat(failed.getString("failedPhase")).isEqualTo("HANDSHAKE");
        assertThat(failed.getString("deviceState")).isEqualTo("RUNNING");
        assertThat(client.get("/v1/devices/big").send().await().bodyAsJsonObject().getString("migration")).isNull();
    }

    @Test
    void aDeviceThatCannotBeOpenedIsReportedAndTheAgentIsNotReady() {
        AgentVerticle agent = LoopbackAgent.named("partial")
                .device(LoopbackAgent.simulated("sim0", 16 << 20, 1))
                .device(new JsonObject().put("name", "gpu9").put("backend", "native").put("device", "0000:99:00.0")).start(vertx);
        WebClient c = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                .setDefaultPort(agent.apiPort()));
        HttpResponse<Buffer> ready = c.get("/readyz").send().await();
        assertThat(ready.statusCode()).isEqualTo(503);
        assertThat(ready.bodyAsJsonObject().getString("devices")).isEqualTo("1 of 2 open");
        assertThat(ready.bodyAsJsonObject().getJsonObject("deviceErrors").getString("gpu9"))
                .contains("no VFIO device with the PCI address 0000:99:00.0");
        assertThat(c.get("/healthz").send().await().statusCode()).isEqualTo(200);
        assertThat(c.get("/v1/devices/sim0").send().await().bodyAsJsonObject().getString("state")).isEqualTo("RUNNING");
    }

    @Test
    void aPciFunctionHeldAfterAMigrationIsReleasedThroughTheApi() {
        AgentVerticle pci = LoopbackAgent.named("dst-pci")
                .device(LoopbackAgent.simulated("gpu0", 64 << 20, 2).put("kind", "pci")).start(vertx);
        WebClient api = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                .setDefaultPort(pci.apiPort()));
        JsonObject before = api.get("/v1/devices/gpu0").send().await().bodyAsJsonObject();
        assertThat(before.getString("kind")).isEqualTo("pci");
        assertThat(before.getString("afterMigration")).isEqualTo("STOP");
        assertThat(before.getString("destination")).isEqualTo("holds it in STOP, open, until it is released to its "
                + "consumer");
        HttpResponse<Buffer> nothingHeld = api.post("/v1/devices/gpu0/release")
                .sendJsonObject(new JsonObject().put("discard", true)).await();
        assertThat(nothingHeld.statusCode()).isEqualTo(409);
        assertThat(errorMessage(nothingHeld)).isEqualTo("device gpu0 holds no migrated state to discard");

        String id = client.post("/v1/migrations").sendJsonObject(new JsonObject().put("device", "gpu0")
                .put("destination", "127.0.0.1:" + pci.streamPort())).await().bodyAsJsonObject().getString("id");
        await("held for its consumer").atMost(Duration.ofSeconds(20)).until(() -> id.equals(
                api.get("/v1/devices/gpu0").send().await().bodyAsJsonObject().getString("heldFor")));
        JsonObject held = api.get("/v1/devices/gpu0").send().await().bodyAsJsonObject();
        assertThat(held.getString("state")).isEqualTo("STOP");

        HttpResponse<Buffer> empty = api.post("/v1/devices/gpu0/release").sendJsonObject(new JsonObject()).await();
        assertThat(empty.statusCode()).isEqualTo(400);
        HttpResponse<Buffer> relative = api.post("/v1/devices/gpu0/release")
                .sendJsonObject(new JsonObject().put("handback", "vmm.sock")).await();
        assertThat(relative.statusCode()).isEqualTo(400);
        assertThat(errorMessage(relative)).contains("handback");
        HttpResponse<Buffer> noFd = api.post("/v1/devices/gpu0/release")
                .sendJsonObject(new JsonObject().put("handback", "/run/vmm/gpu0.sock")).await();
        assertThat(noFd.statusCode()).isEqualTo(409);
        assertThat(errorMessage(noFd)).contains("EOPNOTSUPP").contains("no fd to hand over");
        HttpResponse<Buffer> unknown = api.post("/v1/devices/nope/release")
                .sendJsonObject(new JsonObject().put("discard", true)).await();
        assertThat(unknown.statusCode()).isEqualTo(404);

        HttpResponse<Buffer> discarded = api.post("/v1/devices/gpu0/release")
                .sendJsonObject(new JsonObject().put("discard", true)).await();
        assertThat(discarded.statusCode()).isEqualTo(200);
        assertThat(discarded.bodyAsJsonObject().getString("state")).isEqualTo("RUNNING");
        assertThat(discarded.bodyAsJsonObject().containsKey("heldFor")).isFalse();
        // The same through the event bus.
        assertThatThrownBy(() -> vertx.eventBus().request(Events.command("dst-pci", "release"),
                new JsonObject().put("device", "gpu0").put("discard", true)).await())
                .isInstanceOfSatisfying(io.vertx.core.eventbus.ReplyException.class,
                        e -> assertThat(e.failureCode()).isEqualTo(409));
    }
}
