package io.vfioproxy.api;

import static org.assertj.core.api.Assertions.assertThat;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.Json;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vertx.ext.web.client.WebClientOptions;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.migration.MigrationStatus;
import io.vfioproxy.testing.JsonTrees;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import org.awaitility.Awaitility;

/**
 * The API's request bodies from a hostile or careless client, through a real HTTP client: wrong types, missing
 * and extra fields, deep nesting, huge strings, bytes that are not JSON. Each gets a 4xx with the JSON error shape
 * (or, when it happens to be a valid request, is served); never a 500, never a hang, and the device stays as it was.
 */
class ApiBodiesIT {

    private static final Set<Integer> CLIENT_ERRORS = Set.of(400, 404, 409, 413, 415);

    private static Vertx vertx;
    private static AgentVerticle agent;
    private static WebClient client;
    private static long digest;

    @BeforeContainer
    static void start() {
        vertx = Vertx.vertx();
        agent = LoopbackAgent.named("api").device(LoopbackAgent.simulated("gpu0", 4 << 20, 1)).start(vertx);
        client = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                .setDefaultPort(agent.apiPort()));
        digest = Sim.digest(agent.devices().find("gpu0"));
    }

    @AfterContainer
    static void stop() {
        vertx.close().await();
    }

    private static final JsonObject MIGRATION = new JsonObject().put("device", "gpu0").put("targetDevice", "gpu0")
            .put("destination", "127.0.0.1:1").put("mode", "stop-copy").put("switchover", "auto")
            .put("downtimeLimitMillis", 300).put("precopyBudgetMillis", 1000).put("chunkSize", 1 << 20)
            .put("devices", new JsonArray().add(new JsonObject().put("device", "gpu0")));

    private static final JsonObject RELAY = new JsonObject().put("destination", "127.0.0.1:1")
            .put("target", "unix:/tmp/vmp-nowhere.sock").put("listen", "unix:/tmp/vmp-fuzz.sock").put("channels", 1)
            .put("socketMode", "0600").put("socketOwner", "root");

    @Provide
    Arbitrary<JsonObject> migrations() {
        return JsonTrees.objects(List.copyOf(MIGRATION.fieldNames()), MIGRATION);
    }

    @Provide
    Arbitrary<JsonObject> relays() {
        return JsonTrees.objects(List.copyOf(RELAY.fieldNames()), RELAY);
    }

    /** The answer is a client error with the JSON error shape, or the request was valid and was served. */
    private static void assertAnswered(HttpResponse<Buffer> r, int served) {
        if (r.statusCode() == served) {
            return;
        }
        assertThat(CLIENT_ERRORS).as("status %d: %s", r.statusCode(), r.bodyAsString()).contains(r.statusCode());
        JsonObject error = r.bodyAsJsonObject().getJsonObject("error");
        assertThat(error.getInteger("status")).isEqualTo(r.statusCode());
        assertThat(error.getString("message")).isNotBlank();
    }

    /** Whatever was started ends (the destination does not exist), and the device is back as it was. */
    private static void assertDeviceUntouched() {
        Awaitility.await("every migration has ended").atMost(Duration.ofSeconds(20)).pollDelay(Duration.ZERO)
                .pollInterval(Duration.ofMillis(10))
                .until(() -> agent.migrations().all().stream()
                        .noneMatch(m -> m.status().outcome() == MigrationStatus.Outcome.ACTIVE));
        assertThat(agent.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(agent.devices().find("gpu0"))).isEqualTo(digest);
    }

    @Property(tries = 200)
    void anyMigrationBodyIsAnsweredAndHarmsNothing(@ForAll("migrations") JsonObject body) {
        assertAnswered(client.post("/v1/migrations").sendBuffer(body.toBuffer()).await(), 201);
        assertDeviceUntouched();
    }

    @Property(tries = 100)
    void anyRelayBodyIsAnswered(@ForAll("relays") JsonObject body) {
        HttpResponse<Buffer> r = client.post("/v1/relays").sendBuffer(body.toBuffer()).await();
        assertAnswered(r, 201);
        if (r.statusCode() == 201) {
            client.post("/v1/relays/" + r.bodyAsJsonObject().getString("id") + "/cancel").send().await();
        }
    }

    @Property(tries = 150)
    void anyJsonValueAsABodyIsAnswered(@ForAll("anyJson") Object value) {
        Buffer body = Buffer.buffer(value == null ? "null" : Json.encode(value));
        assertAnswered(client.post("/v1/migrations").sendBuffer(body).await(), 201);
        assertAnswered(client.post("/v1/relays").sendBuffer(body).await(), 201);
        assertAnswered(client.post("/v1/devices/gpu0/release").sendBuffer(body).await(), 200);
        assertDeviceUntouched();
    }

    @Provide
    Arbitrary<Object> anyJson() {
        return JsonTrees.values(4);
    }

    @Property(tries = 100)
    void bytesThatAreNotJsonAreAnswered(@ForAll byte[] bytes) {
        assertAnswered(client.post("/v1/migrations").sendBuffer(Buffer.buffer(bytes)).await(), 201);
        assertDeviceUntouched();
    }

    @Property(tries = 30)
    void deepNestingIsRefused(@ForAll @IntRange(min = 500, max = 100_000) int depth) {
        String nested = "{\"device\":" + "[".repeat(depth) + "]".repeat(depth) + "}";
        HttpResponse<Buffer> r = client.post("/v1/migrations").sendBuffer(Buffer.buffer(nested)).await();
        assertThat(r.statusCode()).isIn(400, 413);
        assertAnswered(r, -1);
    }

    @Example
    void hugeStringsAreRefusedBeforeTheyAreRead() {
        String huge = "x".repeat(8 << 20);
        HttpResponse<Buffer> r = client.post("/v1/migrations").sendJsonObject(MIGRATION.copy().put("device", huge))
                .await();
        assertThat(r.statusCode()).isEqualTo(413);
        assertAnswered(r, -1);
        HttpResponse<Buffer> inside = client.post("/v1/migrations").sendJsonObject(MIGRATION.copy()
                .put("device", "x".repeat(60_000))).await();
        assertAnswered(inside, -1);
        assertDeviceUntouched();
    }
}
