package io.vfioproxy.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.http.WebSocket;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.http.WebSocketClientOptions;
import io.vertx.core.http.WebSocketConnectOptions;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.PemTrustOptions;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.security.Scope;
import io.vfioproxy.security.TrialCredentials;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A feed client that stops reading, over the API's TLS (on by default): its progress events are skipped once its
 * socket backs up, so the agent holds a bounded amount for it, and its state events still all arrive. Each event is
 * its own task on the feed's event loop, so TLS's deferred writability event lands between them and Vert.x's
 * {@code writeQueueFull()} serves here, unlike a writer that fills a socket in one task (vertx/ChannelOutput).
 */
class FeedBackpressureIT {

    /** What is published while the client reads nothing: far more than loopback's socket buffers hold. */
    private static final int PROGRESS_EVENTS = 32_768;
    private static final String PADDING = "x".repeat(2048);

    @TempDir
    Path dir;

    private Vertx vertx;
    private TrialCredentials trial;
    private AgentVerticle agent;
    private WebSocketClient client;

    @BeforeEach
    void start() throws Exception {
        vertx = Vertx.vertx();
        trial = TrialCredentials.create(dir.resolve("certs"), List.of("src"), 1);
        agent = LoopbackAgent.named("src").secure(trial).start(vertx);
        client = vertx.createWebSocketClient(new WebSocketClientOptions().setSsl(true).setVerifyHost(false)
                .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString())));
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    @Test
    void aClientThatStopsReadingMissesProgressButNoStateEvent() throws Exception {
        AtomicInteger progress = new AtomicInteger();
        AtomicReference<JsonObject> marker = new AtomicReference<>();
        WebSocket ws = client.connect(new WebSocketConnectOptions().setHost("127.0.0.1").setPort(agent.apiPort())
                .setSsl(true).setURI("/v1/events?access_token=" + trial.token(Scope.READ))).await();
        ws.textMessageHandler(text -> {
            JsonObject m = new JsonObject(text);
            if (m.getString("type").equals("progress")) {
                progress.incrementAndGet();
            } else if (m.getString("type").equals("device-state")) {
                marker.set(m.getJsonObject("event"));
            }
        });
        ws.pause();

        // 64 MiB of progress, then one state event; the client reads none of it yet.
        for (int i = 0; i < PROGRESS_EVENTS; i++) {
            vertx.eventBus().publish(Events.PROGRESS, new JsonObject().put("agent", "src").put("migration", "m-1")
                    .put("dataBytes", i).put("padding", PADDING));
        }
        vertx.eventBus().publish(Events.DEVICE_STATE, new JsonObject().put("agent", "src").put("device", "gpu0")
                .put("from", "RUNNING").put("to", "STOP"));

        ws.resume();
        await("the state event after the progress").atMost(Duration.ofSeconds(60)).until(() -> marker.get() != null);
        System.out.println("FeedBackpressureIT: " + progress.get() + " of " + PROGRESS_EVENTS + " progress events arrived");
        assertThat(marker.get().getString("to")).isEqualTo("STOP");
        assertThat(progress.get()).as("progress events the agent held for a client that read nothing")
                .isPositive().isLessThan(PROGRESS_EVENTS / 2);
    }
}
