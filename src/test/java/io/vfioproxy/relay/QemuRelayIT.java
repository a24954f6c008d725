package io.vfioproxy.relay;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.testing.AgentProcess;
import io.vfioproxy.testing.QemuVm;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

/**
 * Relay mode with real QEMU (Debian's qemu-system-x86 7.2): a source guest with a few hundred MiB of random data
 * in its memory migrates through two agents to a destination QEMU started with {@code -incoming defer}; what the
 * relay saw is checked against QEMU's own accounting. The source guest boots once; after each migration it is
 * continued and migrates again. Skipped, with the reason printed, only where QEMU cannot run.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(value = 15, unit = TimeUnit.MINUTES)
class QemuRelayIT {

    private static final int MEMORY_MIB = 512;
    private static final int FILL_MIB = 320;
    /** QEMU 7.2 limits a migration to 128 MiB/s by default; the tests lift it, the fault tests lower it. */
    private static final long FAST = 16L << 30;
    private static final long SLOW = 24L << 20;

    private Path dir;
    private Vertx vertx;
    private QemuVm source;
    private AgentVerticle sourceAgent;
    private AgentVerticle destinationAgent;
    private final AtomicInteger runs = new AtomicInteger();

    /** Above QemuVm's own limits for the boot and the fill (60 s for the QMP socket, 240 s for the fill). */
    @BeforeAll
    @Timeout(value = 8, unit = TimeUnit.MINUTES)
    void bootTheSourceGuestOnce() throws Exception {
        String missing = QemuVm.unavailable();
        if (missing != null) {
            System.out.println("QemuRelayIT skipped: " + missing);
            Assumptions.abort(missing);
        }
        dir = Files.createTempDirectory("qemu-relay");
        vertx = Vertx.vertx();
        sourceAgent = LoopbackAgent.named("src").start(vertx);
        destinationAgent = LoopbackAgent.named("dst").merge("relay", allowed()).start(vertx);
        source = QemuVm.source(dir, "src", MEMORY_MIB, FILL_MIB);
    }

    private JsonObject allowed() {
        return new JsonObject().put("allowedTargets", new JsonArray().add("unix:" + dir + "/"));
    }

    @AfterEach
    void sourceRunsAgain() throws Exception {
        if (source == null) {
            return;
        }
        source.migrationSetup(new JsonObject().put("multifd", false), new JsonObject().put("max-bandwidth", FAST));
        if (!source.status().equals("running")) {
            source.execute("cont");
        }
        await("the source guest runs").atMost(Duration.ofSeconds(30)).until(() -> source.status().equals("running"));
    }

    @AfterAll
    void stop() throws Exception {
        if (source != null) {
            source.close();
        }
        if (vertx != null) {
            vertx.close().await();
        }
    }

    /** A destination QEMU waiting on a unix socket of this test's directory. */
    private QemuVm destination(String incoming, boolean multifd) throws Exception {
        QemuVm dst = QemuVm.destination(dir, "dst" + runs.incrementAndGet(), MEMORY_MIB);
        if (multifd) {
            dst.migrationSetup(new JsonObject().put("multifd", true), new JsonObject().put("multifd-channels", 4));
        }
        dst.execute("migrate-incoming", new JsonObject().put("uri", "unix:" + incoming));
        return dst;
    }

    private String incoming() {
        return dir + "/in" + (runs.get() + 1) + ".sock";
    }

    private RelayRecord relay(AgentVerticle from, String destination, String target, int channels) {
        JsonObject request = new JsonObject().put("destination", destination).put("target", "unix:" + target);
        if (channels > 0) {
            request.put("channels", channels);
        }
        return from.relays().start(RelayRequest.fromJson(request)).await();
    }

    private static RelayStatus ended(RelayRecord record) {
        return await("relay ended").atMost(Duration.ofSeconds(120)).until(record::status, s -> s.phase().isTerminal());
    }

    /** Migrates the source guest through {@code relay}; checks QEMU completed and the relay saw what QEMU sent. */
    private RelayStatus migrateThrough(RelayRecord relay, QemuVm dst, int channels) throws Exception {
        source.migrationSetup(new JsonObject().put("multifd", channels > 1), channels > 1
                ? new JsonObject().put("multifd-channels", channels - 1).put("max-bandwidth", FAST)
                : new JsonObject().put("max-bandwidth", FAST));
        long traceMark = source.traceMark();
        source.execute("migrate", new JsonObject().put("uri", relay.status().listen()));
        JsonObject qemu = source.migrationEnd(Duration.ofSeconds(180));
        assertThat(qemu.getString("status")).as(qemu.encode()).isEqualTo("completed");
        await("the destination guest runs").atMost(Duration.ofSeconds(60)).until(() -> dst.status().equals("running"));
        RelayStatus done = ended(relay);
        assertThat(done.phase()).as(done.toJson().encodePrettily()).isEqualTo(RelayPhase.COMPLETED);
        assertThat(done.channels()).hasSize(channels);
        JsonObject ram = qemu.getJsonObject("ram");
        // Zero pages travel on the main channel: exactly QEMU's count ("duplicate").
        assertThat(done.zeroPages()).as(done.toJson().encodePrettily()).isEqualTo(ram.getLong("duplicate"));
        if (channels == 1) {
            // Whole pages too: exactly QEMU's count ("normal").
            assertThat(done.normalPages()).isEqualTo(ram.getLong("normal"));
        } else {
            // QEMU 7.2's multifd threads send a few more pages than its "normal" counts (0.2% here): each channel's
            // pages and packets are what that channel's thread says it sent, and the total is near "normal".
            java.util.Map<Integer, long[]> sent = await("QEMU's multifd threads ended").atMost(Duration.ofSeconds(30))
                    .until(() -> source.multifdSent(traceMark), m -> m.size() == channels - 1);
            for (RelayStatus.Channel c : done.channels().subList(1, channels)) {
                long[] own = sent.get(c.multifd().channelId());
                assertThat(c.multifd().normalPages()).as("channel " + c.multifd().channelId()).isEqualTo(own[1]);
                // QEMU counts the channel's initial packet too.
                assertThat(c.multifd().packets() + 1).isEqualTo(own[0]);
            }
            assertThat((double) done.normalPages()).isCloseTo(ram.getLong("normal"),
                    org.assertj.core.data.Percentage.withPercentage(1));
        }
        // QEMU's dirty-sync-count counts the bitmap syncs: one at setup, one per pass that ends the iterative phase,
        // one at completion. The wire shows passes over memory: one fewer, give or take the last one.
        long syncs = ram.getLong("dirty-sync-count");
        assertThat(done.passes()).as("passes over memory, QEMU synced " + syncs + " times")
                .isBetween(syncs - 2, syncs);
        // QEMU's transferred counts RAM records and pages (and multifd packet headers); the relay counts every
        // byte of the RAM sections, headers and footers too: within a few kilobytes.
        long ramOnWire = done.stream().bytesByKind().get("ram") + done.channels().stream()
                .filter(c -> c.multifd() != null).mapToLong(c -> c.multifd().bytes() - 64).sum();
        assertThat((double) ramOnWire).isCloseTo(ram.getLong("transferred"),
                org.assertj.core.data.Percentage.withPercentage(0.1));
        assertThat(done.stream().complete()).isTrue();
        assertThat(done.stream().note()).isNull();
        assertThat(done.stream().wireDowntimeNanos()).isPositive();
        assertThat(done.stream().devices()).containsKey("ram");
        return done;
    }

    @Test
    void aQemuMigrationCompletesThroughBothAgents() throws Exception {
        String incoming = incoming();
        try (QemuVm dst = destination(incoming, false)) {
            RelayRecord relay = relay(sourceAgent, "127.0.0.1:" + destinationAgent.streamPort(), incoming, 1);
            RelayStatus done = migrateThrough(relay, dst, 1);
            assertThat(done.channels().get(0).kind()).isEqualTo("main");
            assertThat(done.toDestination()).isGreaterThan((long) FILL_MIB << 20);
            RelayStatus there = ended(destinationAgent.relays().find(relay.id()));
            assertThat(there.phase()).isEqualTo(RelayPhase.COMPLETED);
            assertThat(there.toDestination()).isEqualTo(done.toDestination());
        }
    }

    @Test
    void withMultifdEveryChannelIsRelayedInParallel() throws Exception {
        String incoming = incoming();
        try (QemuVm dst = destination(incoming, true)) {
            RelayRecord relay = relay(sourceAgent, "127.0.0.1:" + destinationAgent.streamPort(), incoming, 5);
            RelayStatus done = migrateThrough(relay, dst, 5);
            assertThat(done.channels().get(0).kind()).isEqualTo("main");
            assertThat(done.channels().subList(1, 5)).allSatisfy(c -> {
                assertThat(c.kind()).isEqualTo("multifd");
                assertThat(c.multifd().normalPages()).as("each multifd channel carried pages").isPositive();
                assertThat(c.multifd().note()).isNull();
            });
            assertThat(done.channels().subList(1, 5).stream().map(c -> c.multifd().channelId()))
                    .containsExactlyInAnyOrder(0, 1, 2, 3);
        }
    }

    @Test
    void overTheWebSocketTransport() throws Exception {
        String incoming = incoming();
        try (QemuVm dst = destination(incoming, false)) {
            RelayRecord relay = relay(sourceAgent, "ws://127.0.0.1:" + destinationAgent.apiPort(), incoming, 1);
            migrateThrough(relay, dst, 1);
        }
    }

    @Test
    void overMutualTls() throws Exception {
        io.vfioproxy.security.TrialCredentials trial = io.vfioproxy.security.TrialCredentials.create(
                dir.resolve("certs"), java.util.List.of("src-tls", "dst-tls"), 1);
        AgentVerticle src = LoopbackAgent.named("src-tls").withoutApi().secure(trial).start(vertx);
        AgentVerticle dst = LoopbackAgent.named("dst-tls").withoutApi().secure(trial).merge("relay", allowed())
                .start(vertx);
        String incoming = incoming();
        try (QemuVm dstVm = destination(incoming, false)) {
            RelayRecord relay = relay(src, "127.0.0.1:" + dst.streamPort(), incoming, 1);
            migrateThrough(relay, dstVm, 1);
        } finally {
            vertx.undeploy(src.deploymentID()).await();
            vertx.undeploy(dst.deploymentID()).await();
        }
    }

    @Test
    void theDestinationAgentKilledMidwayFailsTheMigrationAndTheSourceGuestRunsOn() throws Exception {
        JsonObject config = LoopbackAgent.named("dst-process").withoutApi().merge("relay", allowed()).config();
        String incoming = incoming();
        try (AgentProcess killed = AgentProcess.start(dir, config); QemuVm dst = destination(incoming, false)) {
            RelayRecord relay = relay(sourceAgent, "127.0.0.1:" + killed.streamPort(), incoming, 1);
            source.migrationSetup(new JsonObject(), new JsonObject().put("max-bandwidth", SLOW));
            source.execute("migrate", new JsonObject().put("uri", relay.status().listen()));
            await("a third of the guest's memory moved").atMost(Duration.ofSeconds(120))
                    .until(() -> relay.status().toDestination() > (FILL_MIB / 3L) << 20);
            killed.kill();
            RelayStatus failed = ended(relay);
            assertThat(failed.phase()).isEqualTo(RelayPhase.FAILED);
            assertThat(failed.error()).contains("was lost before the channel ended");
            JsonObject qemu = source.migrationEnd(Duration.ofSeconds(60));
            assertThat(qemu.getString("status")).as(qemu.encode()).isEqualTo("failed");
            assertThat(source.status()).isEqualTo("running");
        }
    }

    @Test
    void aCancelThroughTheApiFailsTheMigrationAndTheSourceGuestRunsOn() throws Exception {
        String incoming = incoming();
        WebClient http = WebClient.create(vertx);
        try (QemuVm dst = destination(incoming, false)) {
            RelayRecord relay = relay(sourceAgent, "127.0.0.1:" + destinationAgent.streamPort(), incoming, 1);
            source.migrationSetup(new JsonObject(), new JsonObject().put("max-bandwidth", SLOW));
            source.execute("migrate", new JsonObject().put("uri", relay.status().listen()));
            await("some memory moved").atMost(Duration.ofSeconds(120))
                    .until(() -> relay.status().toDestination() > 32L << 20);
            HttpResponse<Buffer> cancelled = http.post(sourceAgent.apiPort(), "127.0.0.1",
                    "/v1/relays/" + relay.id() + "/cancel").send().await();
            assertThat(cancelled.statusCode()).isEqualTo(202);
            assertThat(ended(relay).phase()).isEqualTo(RelayPhase.CANCELLED);
            JsonObject qemu = source.migrationEnd(Duration.ofSeconds(60));
            assertThat(qemu.getString("status")).isEqualTo("failed");
            assertThat(source.status()).isEqualTo("running");
            assertThat(ended(destinationAgent.relays().find(relay.id())).phase()).isEqualTo(RelayPhase.FAILED);
        } finally {
            http.close();
        }
    }

    @Test
    void aTargetOutsideAllowedTargetsIsRefusedBeforeQemuConnectsAnything() throws Exception {
        Path elsewhere = Files.createTempDirectory("elsewhere");
        String incoming = elsewhere.resolve("in.sock").toString();
        WebClient http = WebClient.create(vertx);
        try (QemuVm dst = QemuVm.destination(dir, "dst" + runs.incrementAndGet(), MEMORY_MIB)) {
            dst.execute("migrate-incoming", new JsonObject().put("uri", "unix:" + incoming));
            HttpResponse<Buffer> refused = http.post(sourceAgent.apiPort(), "127.0.0.1", "/v1/relays")
                    .sendJsonObject(new JsonObject().put("destination", "127.0.0.1:" + destinationAgent.streamPort())
                            .put("target", "unix:" + incoming)).await();
            assertThat(refused.statusCode()).isEqualTo(409);
            assertThat(refused.bodyAsJsonObject().getJsonObject("error").getString("message"))
                    .contains("is not under any of relay.allowedTargets");
            // Nothing reached the destination QEMU: it still waits for its migration.
            assertThat(dst.status()).isEqualTo("inmigrate");
            assertThat(dst.execute("query-migrate").getString("status", "none")).isNotEqualTo("active");
        } finally {
            http.close();
        }
    }
}
