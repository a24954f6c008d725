package io.vfioproxy.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.eventbus.ReplyException;
import io.vertx.core.http.WebSocket;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vertx.ext.web.client.WebClientOptions;
import io.vertx.openapi.contract.OpenAPIContract;
import io.vertx.openapi.contract.Operation;
import io.vertx.openapi.validation.ResponseValidator;
import io.vertx.openapi.validation.ValidatableResponse;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.AgentVertx;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.cli.Main;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.Sim;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The agent's status and control surfaces, through real clients against running agents. */
@ExtendWith(NoBufferLeaks.class)
class StatusIT {

    private static final long MIB = 1 << 20;

    private AgentVertx runtime;
    private Vertx vertx;
    private AgentVerticle source;
    private AgentVerticle destination;
    private WebClient http;
    private WebSocketClient ws;

    @BeforeEach
    void start() {
        runtime = AgentVertx.create();
        vertx = runtime.vertx();
        destination = LoopbackAgent.named("dst").device(LoopbackAgent.simulated("gpu0", 512 * MIB, 2))
                .device(LoopbackAgent.simulated("nic0", 32 * MIB, 3)).start(vertx, runtime.registry());
        // gpu0 produces its state at no more than 1 GB/s: its migration outlasts several 100 ms progress ticks on any
        // machine (a fast one moved 256 MiB inside one tick).
        source = LoopbackAgent.named("src").device(LoopbackAgent.simulated("gpu0", 512 * MIB, 1).put("dirtyRate", "4MiB")
                .put("dataRate", "1GB"))
                .device(LoopbackAgent.simulated("nic0", 32 * MIB, 4)).start(vertx, runtime.registry());
        http = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                .setDefaultPort(source.apiPort()));
        ws = vertx.createWebSocketClient();
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    private String startMigration(JsonObject body) {
        HttpResponse<Buffer> created = http.post("/v1/migrations").sendJsonObject(body).await();
        assertThat(created.statusCode()).as(created.bodyAsString()).isEqualTo(201);
        return created.bodyAsJsonObject().getString("id");
    }

    private JsonObject get(String path) {
        return http.get(path).send().await().bodyAsJsonObject();
    }

    /** A WebSocket to the source agent whose every message (text or binary) is collected from the first on. */
    private record Feed(WebSocket socket, List<JsonObject> messages) {
    }

    private Feed connect(String path) {
        List<JsonObject> messages = new CopyOnWriteArrayList<>();
        // The handler is set in the connect callback, before any message can be delivered.
        WebSocket socket = ws.connect(source.apiPort(), "127.0.0.1", path)
                .onSuccess(s -> s.handler(b -> messages.add(new JsonObject(b)))).await();
        return new Feed(socket, messages);
    }

    @Test
    void aWebSocketClientFollowsAMigrationFromStartToCompletionWithProgress() {
        List<JsonObject> events = connect("/v1/events").messages();
        String id = startMigration(new JsonObject().put("device", "gpu0").put("mode", "stop-copy")
                .put("destination", "127.0.0.1:" + destination.streamPort()));
        await("the completed event").atMost(Duration.ofSeconds(30)).until(() -> events.stream().anyMatch(m ->
                m.getString("type").equals("migration") && m.getJsonObject("event").getString("event").equals("completed")));
        List<JsonObject> progress = events.stream().filter(m -> m.getString("type").equals("progress"))
                .map(m -> m.getJsonObject("event")).filter(e -> e.getString("migration").equals(id)).toList();
        assertThat(progress).isNotEmpty();
        assertThat(progress).allSatisfy(p -> {
            assertThat(p.getString("agent")).isEqualTo("src");
            assertThat(p.getLong("stateSize")).isPositive();
        });
        assertThat(progress).anySatisfy(p -> assertThat(p.getLong("rateBytesPerSecond")).isPositive());
        assertThat(progress.stream().mapToLong(p -> p.getLong("dataBytes")).toArray()).isSorted();
        assertThat(events).anyMatch(m -> m.getString("type").equals("device-state")
                && m.getJsonObject("event").getString("to").equals("STOP_COPY"));
        assertThat(events).noneMatch(m -> !m.getJsonObject("event").getString("agent").equals("src"));
    }

    @Test
    void aMigrationFeedStartsWithTheStatusAndClosesAfterTheEnd() {
        String id = startMigration(new JsonObject().put("device", "nic0").put("switchover", "manual")
                .put("destination", "127.0.0.1:" + destination.streamPort()));
        await("ready for switchover").atMost(Duration.ofSeconds(20)).until(() -> get("/v1/migrations/" + id).getString("phase").equals("READY_FOR_SWITCHOVER"));
        Feed connected = connect("/v1/migrations/" + id + "/events");
        WebSocket feed = connected.socket();
        List<JsonObject> events = connected.messages();
        boolean[] closed = {false};
        feed.closeHandler(v -> closed[0] = true);
        await("the status").atMost(Duration.ofSeconds(5)).until(() -> !events.isEmpty());
        assertThat(events.get(0).getJsonObject("event").getString("event")).isEqualTo("status");
        assertThat(events.get(0).getJsonObject("event").getString("phase")).isEqualTo("READY_FOR_SWITCHOVER");
        assertThat(http.post("/v1/migrations/" + id + "/switchover").send().await().statusCode()).isEqualTo(202);
        await("the feed closes").atMost(Duration.ofSeconds(20)).until(() -> closed[0]);
        JsonObject last = events.get(events.size() - 1).getJsonObject("event");
        assertThat(last.getString("event")).isEqualTo("completed");
        assertThat(events).anyMatch(m -> m.getString("type").equals("device-state")
                && m.getJsonObject("event").getString("device").equals("nic0"));
    }

    @Test
    void aMigrationStreamCrossesWebSocketInsteadOfTcp() {
        String id = startMigration(new JsonObject().put("device", "nic0")
                .put("destination", "ws://127.0.0.1:" + destination.apiPort()));
        await("completed").atMost(Duration.ofSeconds(30)).until(() -> get("/v1/migrations/" + id).getString("outcome").equals("completed"));
        assertThat(get("/v1/migrations/" + id).getString("peer")).isEqualTo("ws://127.0.0.1:" + destination.apiPort()
                + "/v1/stream");
        assertThat(Sim.digest(destination.devices().find("nic0"))).isEqualTo(Sim.digest(source.devices().find("nic0")));
        assertThat(destination.migrations().find(id).toJson().getString("peer")).startsWith("ws ");
    }

    @Test
    void theSockJsBridgeRefusesAPublishThatIsNotAllowedAndDeliversEvents() {
        Feed connected = connect("/eventbus/websocket");
        WebSocket bridge = connected.socket();
        List<JsonObject> frames = connected.messages();
        bridge.writeTextMessage(new JsonObject().put("type", "publish").put("address", Events.command("src", "migrate"))
                .put("body", new JsonObject().put("device", "nic0").put("destination", "x:1")).encode());
        await("the refusal").atMost(Duration.ofSeconds(10)).until(() -> frames.stream()
                .anyMatch(f -> "err".equals(f.getString("type"))));
        assertThat(frames).anyMatch(f -> "access_denied".equals(f.getString("body")));
        assertThat(source.migrations().all()).isEmpty();

        bridge.writeTextMessage(new JsonObject().put("type", "register").put("address", Events.DEVICE_STATE).encode());
        vertx.setTimer(200, t -> source.devices().find("nic0").reset("bridge test"));
        await("a device event through the bridge").atMost(Duration.ofSeconds(10)).until(() -> frames.stream()
                .anyMatch(f -> "rec".equals(f.getString("type")) && Events.DEVICE_STATE.equals(f.getString("address"))));
    }

    @Test
    void prometheusShowsTheAgentsMetricsWithTheValuesOfTheMigrationJustRun() {
        String id = startMigration(new JsonObject().put("device", "nic0").put("mode", "stop-copy")
                .put("destination", "127.0.0.1:" + destination.streamPort()));
        await("completed").atMost(Duration.ofSeconds(30)).until(() -> get("/v1/migrations/" + id).getString("outcome").equals("completed"));
        long dataBytes = get("/v1/migrations/" + id).getLong("dataBytes");
        await("both ends are counted").atMost(Duration.ofSeconds(5)).until(() -> {
            String t = scrape();
            return t.contains("vmp_migrations_total{agent=\"src\"") && t.contains("vmp_migrations_total{agent=\"dst\"");
        });
        String text = scrape();
        assertThat(value(text, "vmp_migrations_total", "agent=\"src\"", "outcome=\"completed\"", "role=\"source\""))
                .isEqualTo(1.0);
        assertThat(value(text, "vmp_migrations_total", "agent=\"dst\"", "outcome=\"completed\"", "role=\"destination\""))
                .isEqualTo(1.0);
        assertThat(value(text, "vmp_migrated_bytes_total", "agent=\"src\"", "device=\"nic0\"", "direction=\"sent\"",
                "phase=\"stop-copy\"")).isEqualTo((double) dataBytes);
        assertThat(value(text, "vmp_migrated_bytes_total", "agent=\"dst\"", "device=\"nic0\"",
                "direction=\"received\"")).isEqualTo((double) dataBytes);
        assertThat(value(text, "vmp_migration_downtime_seconds_count", "agent=\"src\"")).isEqualTo(1.0);
        assertThat(value(text, "vmp_migration_duration_seconds_count", "agent=\"src\"", "role=\"source\"")).isEqualTo(1.0);
        assertThat(value(text, "vmp_device_transition_seconds_count", "agent=\"src\"", "device=\"nic0\"",
                "from=\"STOP\"", "to=\"STOP_COPY\"")).isEqualTo(1.0);
        assertThat(value(text, "vmp_device_state", "agent=\"src\"", "device=\"nic0\"")).isEqualTo(1.0);
        assertThat(value(text, "vmp_device_state", "agent=\"dst\"", "device=\"nic0\"")).isEqualTo(2.0);
        assertThat(value(text, "vmp_migrations_active", "agent=\"src\"", "role=\"source\"")).isEqualTo(0.0);
        assertThat(text).contains("vertx_net_server_active_connections").contains("vertx_http_server_requests_total")
                .contains("vertx_eventbus_published_total");
    }

    private String scrape() {
        return http.get("/metrics").send().await().bodyAsString();
    }

    /** The value of the one sample of {@code name} whose labels include all of {@code labels}. */
    private static double value(String text, String name, String... labels) {
        Matcher m = Pattern.compile("(?m)^" + name + "\\{([^}]*)\\} (\\S+)$").matcher(text);
        Double found = null;
        while (m.find()) {
            String l = m.group(1);
            if (java.util.Arrays.stream(labels).allMatch(l::contains)) {
                assertThat(found).as("one sample of " + name + " " + List.of(labels)).isNull();
                found = Double.parseDouble(m.group(2));
            }
        }
        assertThat(found).as(name + " " + List.of(labels)).isNotNull();
        return found;
    }

    @Test
    void healthAndReadinessForKubernetesProbes() {
        assertThat(http.get("/healthz").send().await().statusCode()).isEqualTo(200);
        HttpResponse<Buffer> ready = http.get("/readyz").send().await();
        assertThat(ready.statusCode()).isEqualTo(200);
        assertThat(ready.bodyAsJsonObject().getBoolean("ready")).isTrue();
        assertThat(ready.bodyAsJsonObject().getString("devices")).isEqualTo("2 of 2 open");
        assertThat(ready.bodyAsJsonObject().getString("eventBus")).isEqualTo("up");
    }

    @Test
    void eventBusCommandsStartReadAndRefuseLikeTheApi() {
        JsonObject state = vertx.eventBus().<JsonObject>request(Events.command("src", "device"),
                new JsonObject().put("device", "nic0")).await().body();
        assertThat(state.getString("state")).isEqualTo("RUNNING");
        JsonObject started = vertx.eventBus().<JsonObject>request(Events.command("src", "migrate"),
                new JsonObject().put("device", "nic0").put("mode", "stop-copy")
                        .put("destination", "127.0.0.1:" + destination.streamPort())).await().body();
        String id = started.getString("id");
        await("completed").atMost(Duration.ofSeconds(20)).until(() -> source.migrations().find(id).status().outcome().name().equals("COMPLETED"));
        assertThatThrownBy(() -> vertx.eventBus().request(Events.command("src", "cancel"),
                new JsonObject().put("migration", id)).await())
                .isInstanceOfSatisfying(ReplyException.class, e -> {
                    assertThat(e.failureCode()).isEqualTo(409);
                    assertThat(e.getMessage()).contains("has already ended (completed)");
                });
        assertThatThrownBy(() -> vertx.eventBus().request(Events.command("src", "switchover"),
                new JsonObject().put("migration", "m-none")).await())
                .isInstanceOfSatisfying(ReplyException.class, e -> assertThat(e.failureCode()).isEqualTo(404));
        assertThatThrownBy(() -> vertx.eventBus().request(Events.command("src", "migrate"),
                new JsonObject().put("device", "nic0")).await())
                .isInstanceOfSatisfying(ReplyException.class, e -> {
                    assertThat(e.failureCode()).isEqualTo(400);
                    assertThat(e.getMessage()).isEqualTo("invalid MigrationRequest: the body: Instance does not have "
                            + "required property \"destination\"");
                });
        assertThatThrownBy(() -> vertx.eventBus().request(Events.command("src", "device"),
                new JsonObject().put("device", "nope")).await())
                .isInstanceOfSatisfying(ReplyException.class, e -> assertThat(e.failureCode()).isEqualTo(404));
    }

    @Test
    void everyRouteOfTheOpenApiDocumentAnswersAsTheDocumentSays() {
        JsonObject doc = get("/v1/openapi.json");
        assertThat(doc.getString("openapi")).startsWith("3.");
        OpenAPIContract contract = OpenAPIContract.from(vertx, doc.copy()).await();
        ResponseValidator responses = ResponseValidator.create(vertx, contract);
        List<String> checked = new ArrayList<>();
        for (Operation op : contract.operations()) {
            String concrete = op.getOpenAPIPath().replace("{id}", "m-none").replace("{name}", "nope")
                    .replace("{transport}", "info");
            String what = op.getHttpMethod() + " " + concrete + " (" + op.getOperationId() + ")";
            if (op.getResponse(101) != null && op.getResponse(200) == null) {
                // A WebSocket route: it upgrades (the feed of an unknown migration answers 404 instead, as documented).
                boolean unknown = concrete.contains("m-none");
                if (unknown) {
                    assertThatThrownBy(() -> ws.connect(source.apiPort(), "127.0.0.1", concrete).await())
                            .as(what).hasMessageContaining("404");
                } else {
                    ws.connect(source.apiPort(), "127.0.0.1", concrete).await().close().await();
                }
                checked.add(what);
                continue;
            }
            HttpResponse<Buffer> r = http.request(op.getHttpMethod(), concrete).sendJsonObject(new JsonObject()).await();
            Map<String, String> headers = new HashMap<>();
            r.headers().forEach(h -> headers.put(h.getKey(), h.getValue()));
            String type = r.getHeader("Content-Type") == null ? null : r.getHeader("Content-Type").split(";")[0];
            if (type != null && !type.equals("application/json")) {
                // vertx-openapi validates JSON bodies only: of the others (the Prometheus text), the status and the
                // media type must be documented.
                assertThat(op.getResponse(r.statusCode())).as(what + " answered " + r.statusCode()).isNotNull();
                assertThat(op.getResponse(r.statusCode()).getContent()).as(what).containsKey(type);
                checked.add(what);
                continue;
            }
            ValidatableResponse answer = r.body() == null ? ValidatableResponse.create(r.statusCode(), headers)
                    : ValidatableResponse.create(r.statusCode(), headers, r.body(), type);
            try {
                responses.validate(answer, op.getOperationId()).await();
            } catch (RuntimeException e) {
                throw new AssertionError(what + " answered " + r.statusCode() + " " + r.bodyAsString() + ": "
                        + e.getMessage(), e);
            }
            checked.add(what);
        }
        int documented = 0;
        JsonObject paths = doc.getJsonObject("paths");
        for (String path : paths.fieldNames()) {
            documented += paths.getJsonObject(path).size();
        }
        assertThat(checked).hasSize(documented);
    }

    @Test
    void statusAndWatchCommandsShowTheAgent() throws Exception {
        String api = "http://127.0.0.1:" + source.apiPort();
        PrintStream saved = System.out;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        try {
            String id = startMigration(new JsonObject().put("device", "nic0").put("switchover", "manual")
                    .put("destination", "127.0.0.1:" + destination.streamPort()));
            await("ready for switchover").atMost(Duration.ofSeconds(20)).until(() -> get("/v1/migrations/" + id).getString("phase").equals("READY_FOR_SWITCHOVER"));
            assertThat(Main.run("status", "--agent", api)).isZero();
            vertx.setTimer(300, t -> http.post("/v1/migrations/" + id + "/switchover").send());
            assertThat(Main.run("watch", "--agent", api, "--migration", id)).isZero();
        } finally {
            System.setOut(saved);
        }
        String text = out.toString(StandardCharsets.UTF_8);
        assertThat(text).contains("agent src").contains("nic0").contains("READY_FOR_SWITCHOVER")
                .contains("migration").contains("completed");
    }
}
