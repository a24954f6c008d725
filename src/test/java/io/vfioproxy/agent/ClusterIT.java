package io.vfioproxy.agent;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.WebSocket;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.http.WebSocketClientOptions;
import io.vertx.core.http.WebSocketConnectOptions;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;
import io.vertx.core.net.NetSocket;
import io.vertx.core.net.PemKeyCertOptions;
import io.vertx.core.net.PemTrustOptions;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vertx.ext.web.client.WebClientOptions;
import io.vfioproxy.security.Scope;
import io.vfioproxy.security.TrialCredentials;
import io.vfioproxy.testing.AgentProcess;
import io.vfioproxy.testing.Browser;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.openqa.selenium.By;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.support.ui.WebDriverWait;

/**
 * Three secure agents, each in a JVM of its own, clustered on loopback (Hazelcast TCP-IP members, the event bus
 * over mutual TLS): a subscriber on node-b's cluster feed follows a migration from node-a to node-c; the same
 * migration started through node-b's API naming node-a's device; node-a SIGKILLed mid-migration, and node-b and
 * node-c say it left, node-c naming the migration it interrupted. node-b's operators' page, in headless Chromium,
 * shows the three agents and their devices, follows node-a's migration, and shows node-a gone. A relay asked of
 * node-b for node-a runs on node-a, and node-c's refusal of a target comes back through both.
 */
@Timeout(value = 8, unit = TimeUnit.MINUTES)
class ClusterIT {

    private static final long MIB = 1 << 20;
    /** Three JVMs forming a cluster on a busy 2-core machine, and a member's heartbeats missed (5 s) after a kill. */
    private static final Duration WAIT = Duration.ofSeconds(120);
    private static final List<String> NAMES = List.of("node-a", "node-b", "node-c");

    @TempDir
    Path dir;
    private Vertx vertx;
    private TrialCredentials trial;
    private final Map<String, AgentProcess> agents = new TreeMap<>();
    private final Map<String, WebClient> apis = new TreeMap<>();
    private final Map<String, Integer> eventBusPorts = new TreeMap<>();
    private final List<JsonObject> clusterFeed = new CopyOnWriteArrayList<>();
    private WebSocketClient wsClient;
    private boolean passed;
    private WebDriver browser;

    /** Above AgentNode's 120 s for an agent to serve: the three join together, each waiting for the others. */
    @BeforeEach
    @Timeout(value = 4, unit = TimeUnit.MINUTES)
    void start() throws Exception {
        vertx = Vertx.vertx();
        trial = TrialCredentials.create(dir.resolve("certs"), NAMES, 1);
        List<Integer> ports = new ArrayList<>();
        for (int i = 0; i < 2 * NAMES.size(); i++) {
            try (ServerSocket s = new ServerSocket(0)) {
                ports.add(s.getLocalPort());
            }
        }
        JsonArray members = new JsonArray();
        ports.subList(0, NAMES.size()).forEach(p -> members.add("127.0.0.1:" + p));
        List<CompletableFuture<AgentProcess>> starting = new ArrayList<>();
        for (int i = 0; i < NAMES.size(); i++) {
            String name = NAMES.get(i);
            LoopbackAgent agent = LoopbackAgent.named(name).secure(trial)
                    .merge("cluster", new JsonObject().put("enabled", true).put("host", "127.0.0.1")
                            .put("port", ports.get(i)).put("members", members).put("eventBusPort", ports.get(NAMES.size() + i))
                            .put("failureSeconds", 5))
                    .merge("relay", new JsonObject().put("allowedTargets", new JsonArray()
                            .add("unix:" + dir.resolve("hypervisor") + "/")));
            if (!name.equals("node-b")) {
                for (int d = 0; d < 3; d++) {
                    // At 64 MB/s a migration lasts a few 100 ms progress ticks, however fast the machine.
                    agent.device(LoopbackAgent.simulated("gpu" + d, 16 * MIB, 10L * i + d).put("dataRate", "64MB"));
                }
            }
            JsonObject config = agent.config();
            // Together: each one's join waits for the others to answer.
            starting.add(CompletableFuture.supplyAsync(() -> {
                try {
                    return AgentProcess.start(dir, config);
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            }));
        }
        for (int i = 0; i < NAMES.size(); i++) {
            AgentProcess p = starting.get(i).join();
            agents.put(NAMES.get(i), p);
            eventBusPorts.put(NAMES.get(i), ports.get(NAMES.size() + i));
            apis.put(NAMES.get(i), WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                    .setDefaultPort(p.apiPort()).setSsl(true).setVerifyHost(false)
                    .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString()))));
        }
    }

    @AfterEach
    void stop() throws Exception {
        if (browser != null) {
            browser.quit();
        }
        for (AgentProcess p : agents.values()) {
            p.close();
        }
        if (!passed) {
            // What each agent said, for whoever reads a failure.
            for (String name : NAMES) {
                Path log = dir.resolve(name + ".log");
                if (java.nio.file.Files.exists(log)) {
                    System.out.println("---- " + name + " ----\n" + java.nio.file.Files.readString(log));
                }
            }
        }
        vertx.close().await();
    }

    private JsonObject get(String agent, String path) throws Exception {
        HttpResponse<Buffer> r = step("GET " + path + " on " + agent, apis.get(agent).get(path)
                .bearerTokenAuthentication(trial.token(Scope.READ)).send());
        assertThat(r.statusCode()).as("GET " + path + " on " + agent + ": " + r.bodyAsString()).isEqualTo(200);
        return r.bodyAsJsonObject();
    }

    private HttpResponse<Buffer> post(String agent, String path, JsonObject body) throws Exception {
        return step("POST " + path + " on " + agent, apis.get(agent).post(path)
                .bearerTokenAuthentication(trial.token(Scope.CONTROL)).sendJsonObject(body));
    }

    /**
     * Awaits {@code f}, naming {@code what} when it fails: Vert.x's "Connection was closed" carries no stack trace,
     * so without a name a failure here does not say which step it was.
     */
    private static <T> T step(String what, Future<T> f) {
        try {
            return f.await();
        } catch (RuntimeException e) {
            throw new AssertionError(what + " failed: " + e, e);
        }
    }

    private void subscribe(String agent) throws Exception {
        wsClient = vertx.createWebSocketClient(new WebSocketClientOptions().setSsl(true).setVerifyHost(false)
                .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString())));
        WebSocket ws = step("the cluster feed of " + agent, wsClient.connect(new WebSocketConnectOptions()
                .setHost("127.0.0.1").setPort(agents.get(agent).apiPort()).setSsl(true)
                .setURI("/v1/events?scope=cluster&access_token=" + trial.token(Scope.READ))));
        ws.textMessageHandler(text -> clusterFeed.add(new JsonObject(text)));
    }

    /** Waits until the cluster feed carries an event of {@code type} that {@code what} accepts; returns it. */
    private JsonObject seen(String why, String type, Predicate<JsonObject> what) {
        return await(why).atMost(WAIT).until(() -> clusterFeed.stream()
                .filter(m -> type.equals(m.getString("type"))).map(m -> m.getJsonObject("event"))
                .filter(what).findFirst(), java.util.Optional::isPresent).orElseThrow();
    }

    private WebDriverWait waiting() {
        return new WebDriverWait(browser, WAIT, Duration.ofMillis(100));
    }

    /** The state the page shows for agent {@code name}, or "" while it has no row. */
    private String agentState(String name) {
        List<WebElement> cells = browser.findElements(By.cssSelector("#agents tr[data-agent='" + name
                + "'] td:nth-child(2)"));
        return cells.isEmpty() ? "" : cells.get(0).getText();
    }

    /** The text of {@code column} (1-based) in the page's row of migration {@code id} at {@code agent}, or "". */
    private String migrationCell(String agent, String id, int column) {
        List<WebElement> cells = browser.findElements(By.cssSelector("#migrations tr[data-migration='" + agent + "/"
                + id + "'] td:nth-child(" + column + ")"));
        return cells.isEmpty() ? "" : cells.get(0).getText();
    }

    /**
     * node-b's event bus port holds a connection with an agent's certificate, and drops one without a certificate
     * (the TLS handshake's client authentication fails) and one in plaintext.
     */
    private void theEventBusTakesOnlyAgents() throws Exception {
        int port = eventBusPorts.get("node-b");
        NetClientOptions trusting = new NetClientOptions().setSsl(true).setHostnameVerificationAlgorithm("")
                .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString()));
        NetClientOptions asAgent = new NetClientOptions(trusting).setKeyCertOptions(new PemKeyCertOptions()
                .setCertPath(trial.certificate("node-c").toString()).setKeyPath(trial.key("node-c").toString()));
        // Vert.x closes a client (and its connections) once the client is garbage-collected (CleanableNetClient):
        // each is held until the end, or a collection in between would close a connection this check relies on.
        List<NetClient> clients = new ArrayList<>();
        try {
            NetClient asAgentClient = vertx.createNetClient(asAgent);
            clients.add(asAgentClient);
            NetSocket agent = step("a connection with an agent's certificate to node-b's event bus",
                    asAgentClient.connect(port, "127.0.0.1"));
            AtomicBoolean agentClosed = new AtomicBoolean();
            agent.closeHandler(v -> agentClosed.set(true));
            // The first bytes of a frame: the event bus waits for the rest.
            step("a write on it", agent.write(Buffer.buffer(new byte[] {0, 0})));
            for (NetClientOptions stranger : List.of(trusting, new NetClientOptions())) {
                NetClient client = vertx.createNetClient(stranger);
                clients.add(client);
                AtomicBoolean closed = new AtomicBoolean();
                client.connect(port, "127.0.0.1").onSuccess(socket -> {
                    socket.closeHandler(v -> closed.set(true));
                    socket.write(Buffer.buffer(new byte[] {0, 0, 0, 4, 1, 2, 3, 4}));
                }).onFailure(e -> closed.set(true));
                await("node-b's event bus drops a client "
                        + (stranger.isSsl() ? "without a certificate" : "in plaintext")).atMost(WAIT).untilTrue(closed);
            }
            assertThat(agentClosed).as("the agent's connection is still open").isFalse();
        } finally {
            clients.forEach(NetClient::close);
        }
    }

    private String digest(String agent, String device) throws Exception {
        return get(agent, "/v1/devices/" + device).getString("stateDigest");
    }

    @Test
    void aClusterFeedFollowsMigrationsAcrossAgentsAndTheAgentsSayWhenOneIsKilled() throws Exception {
        await("node-b sees three agents up").atMost(WAIT).until(() -> get("node-b", "/v1/cluster")
                .getJsonArray("agents").stream().map(JsonObject.class::cast)
                .filter(a -> "up".equals(a.getString("state")) && a.getBoolean("ready", false)).count() == 3);
        assertThat(apis.get("node-b").get("/metrics").bearerTokenAuthentication(trial.token(Scope.READ)).send()
                .await().bodyAsString()).containsPattern("\nvmp_cluster_agents\\{agent=\"node-b\"} 3(\\.0)?\n");
        JsonObject cluster = get("node-b", "/v1/cluster");
        assertThat(cluster.getBoolean("clustered")).isTrue();
        JsonObject a = cluster.getJsonArray("agents").stream().map(JsonObject.class::cast)
                .filter(x -> "node-a".equals(x.getString("agent"))).findFirst().orElseThrow();
        assertThat(a.getString("stream")).isEqualTo("127.0.0.1:" + agents.get("node-a").streamPort());
        assertThat(a.getJsonArray("devices")).hasSize(3);
        subscribe("node-b");
        theEventBusTakesOnlyAgents();

        // node-a to node-c, followed on node-b's cluster feed.
        String before = digest("node-a", "gpu0");
        String destination = "127.0.0.1:" + agents.get("node-c").streamPort();
        HttpResponse<Buffer> started = post("node-a", "/v1/migrations", new JsonObject().put("device", "gpu0")
                .put("destination", destination));
        assertThat(started.statusCode()).as(started.bodyAsString()).isEqualTo(201);
        String first = started.bodyAsJsonObject().getString("id");
        seen("node-a's start on node-b's feed", "migration", e -> "node-a".equals(e.getString("agent"))
                && first.equals(e.getString("migration")) && "started".equals(e.getString("event")));
        seen("its progress", "progress", e -> "node-a".equals(e.getString("agent"))
                && first.equals(e.getString("migration")));
        JsonObject done = seen("its end at the source", "migration", e -> "node-a".equals(e.getString("agent"))
                && first.equals(e.getString("migration")) && "completed".equals(e.getString("event")));
        assertThat(done.getString("peerAgent")).isEqualTo("node-c");
        seen("its end at the destination", "migration", e -> "node-c".equals(e.getString("agent"))
                && first.equals(e.getString("migration")) && "completed".equals(e.getString("event")));
        assertThat(digest("node-c", "gpu0")).as("the destination holds the source's state").isEqualTo(before);

        // The same, started through node-b's API, naming node-a's device.
        String before1 = digest("node-a", "gpu1");
        HttpResponse<Buffer> routed = post("node-b", "/v1/migrations", new JsonObject().put("device", "node-a/gpu1")
                .put("destination", destination));
        assertThat(routed.statusCode()).as(routed.bodyAsString()).isEqualTo(201);
        assertThat(routed.bodyAsJsonObject().getString("agent")).isEqualTo("node-a");
        assertThat(routed.bodyAsJsonObject().getString("device")).isEqualTo("gpu1");
        String second = routed.bodyAsJsonObject().getString("id");
        seen("the routed migration's end", "migration", e -> "node-a".equals(e.getString("agent"))
                && second.equals(e.getString("migration")) && "completed".equals(e.getString("event")));
        await("the destination's end").atMost(WAIT).until(() -> "completed".equals(get("node-c",
                "/v1/migrations/" + second).getString("outcome")));
        assertThat(digest("node-c", "gpu1")).isEqualTo(before1);
        // Refusals come back as the owner gave them, and an agent the cluster lacks is named.
        HttpResponse<Buffer> unknownDevice = post("node-b", "/v1/migrations", new JsonObject()
                .put("device", "node-a/nope").put("destination", destination));
        assertThat(unknownDevice.statusCode()).isEqualTo(404);
        assertThat(unknownDevice.bodyAsString()).contains("agent node-a has no device named 'nope'");
        HttpResponse<Buffer> unknownAgent = post("node-b", "/v1/migrations", new JsonObject()
                .put("device", "node-x/gpu0").put("destination", destination));
        assertThat(unknownAgent.statusCode()).isEqualTo(404);
        assertThat(unknownAgent.bodyAsString()).contains("no agent 'node-x' in the cluster");

        // A relay asked of node-b for node-a: node-a listens, and node-c's refusal comes back through both.
        JsonObject relay = new JsonObject().put("agent", "node-a").put("destination", destination);
        HttpResponse<Buffer> relayed = post("node-b", "/v1/relays", relay.copy()
                .put("target", "unix:" + dir.resolve("hypervisor").resolve("incoming.sock")));
        assertThat(relayed.statusCode()).as(relayed.bodyAsString()).isEqualTo(201);
        String relayId = relayed.bodyAsJsonObject().getString("id");
        assertThat(relayed.bodyAsJsonObject().getString("listen")).startsWith("unix:");
        assertThat(get("node-a", "/v1/relays/" + relayId).getString("phase")).isEqualTo("LISTENING");
        assertThat(post("node-a", "/v1/relays/" + relayId + "/cancel", new JsonObject()).statusCode())
                .isEqualTo(202);
        HttpResponse<Buffer> outside = post("node-b", "/v1/relays", relay.copy().put("target", "unix:/tmp/x.sock"));
        assertThat(outside.statusCode()).as(outside.bodyAsString()).isEqualTo(409);
        assertThat(outside.bodyAsString()).contains("is not under any of relay.allowedTargets");

        // node-b's page, with a read token, shows every agent and follows the next migration.
        boolean page = Browser.available("ClusterIT's page check");
        if (page) {
            browser = Browser.start(dir);
            browser.get("https://127.0.0.1:" + agents.get("node-b").apiPort() + "/");
            waiting().until(b -> b.findElement(By.id("login")).isDisplayed());
            browser.findElement(By.id("token")).sendKeys(trial.token(Scope.READ));
            browser.findElement(By.id("login-button")).click();
            waiting().until(b -> b.findElement(By.id("feed")).getText().equals("feed: live"));
            for (String name : NAMES) {
                waiting().until(b -> agentState(name).equals("up"));
            }
            assertThat(browser.findElements(By.cssSelector("#devices tr[data-device^='node-a/']"))).hasSize(3);
            assertThat(browser.findElements(By.cssSelector("#devices tr[data-device^='node-c/']"))).hasSize(3);
        }

        // node-a killed while its migration waits for its switchover.
        HttpResponse<Buffer> waiting = post("node-a", "/v1/migrations", new JsonObject().put("device", "gpu2")
                .put("switchover", "manual").put("destination", destination));
        assertThat(waiting.statusCode()).as(waiting.bodyAsString()).isEqualTo(201);
        String third = waiting.bodyAsJsonObject().getString("id");
        seen("the third migration ready", "migration", e -> "node-a".equals(e.getString("agent"))
                && third.equals(e.getString("migration")) && "READY_FOR_SWITCHOVER".equals(e.getString("phase")));
        if (page) {
            waiting().until(b -> migrationCell("node-a", third, 6).equals("READY_FOR_SWITCHOVER"));
            assertThat(browser.findElements(By.cssSelector("#migrations button"))).as("a read token").isEmpty();
        }
        agents.get("node-a").kill();
        seen("node-b says node-a left", "cluster", e -> "node-b".equals(e.getString("agent"))
                && "left".equals(e.getString("event")) && "node-a".equals(e.getString("member")));
        JsonObject fromC = seen("node-c says node-a left", "cluster", e -> "node-c".equals(e.getString("agent"))
                && "left".equals(e.getString("event")) && "node-a".equals(e.getString("member")));
        assertThat(fromC.getJsonArray("interrupted")).as("node-c names the migration node-a interrupted")
                .contains(third);
        JsonObject atC = get("node-c", "/v1/migrations/" + third);
        assertThat(atC.getString("outcome")).isEqualTo("failed");
        assertThat(get("node-c", "/v1/devices/gpu2").getString("state")).as("the destination device reset")
                .isEqualTo("RUNNING");
        await("node-b's metrics count two agents").atMost(WAIT).until(() -> apis.get("node-b").get("/metrics")
                .bearerTokenAuthentication(trial.token(Scope.READ)).send().await().bodyAsString()
                .matches("(?s).*\nvmp_cluster_agents\\{agent=\"node-b\"} 2(\\.0)?\n.*"));
        JsonObject after = get("node-b", "/v1/cluster");
        assertThat(after.getJsonArray("agents").stream().map(JsonObject.class::cast)
                .filter(x -> "node-a".equals(x.getString("agent"))).map(x -> x.getString("state")))
                .containsExactly("gone");
        if (page) {
            waiting().until(b -> agentState("node-a").equals("gone"));
            waiting().until(b -> b.findElements(By.cssSelector("#devices tr[data-device^='node-a/']")).isEmpty());
            waiting().until(b -> migrationCell("node-c", third, 11).startsWith("failed"));
            assertThat(agentState("node-c")).isEqualTo("up");
        }
        passed = true;
    }
}
