package io.vfioproxy.security;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.UpgradeRejectedException;
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
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.migration.MigrationRecord;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.migration.MigrationStatus;
import io.vfioproxy.migration.Phase;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.StreamEndpoint;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.testing.LogCapture;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Secure agents (mutual TLS on both stream endpoints, HTTPS and tokens on the API) against real clients that lack
 * what they need: each is refused, nothing reaches the device, and the refusal is logged once with the peer.
 */
class SecurityIT {

    private static final long MIB = 1 << 20;
    private static final Duration REFUSED_WITHIN = Duration.ofSeconds(20);

    @TempDir
    Path dir;

    private Vertx vertx;
    private TrialCredentials trial;
    private AgentVerticle dst;
    private DeviceHandle target;
    private long targetDigest;
    private LogCapture log;
    /** Vert.x 5 closes a client nothing references at the next GC: the test keeps every one it made. */
    private final List<Object> clients = new ArrayList<>();

    @BeforeEach
    void start() throws Exception {
        vertx = Vertx.vertx();
        log = LogCapture.of("io.vfioproxy.security");
        trial = TrialCredentials.create(dir.resolve("certs"), List.of("src", "dst"), 1);
        dst = LoopbackAgent.named("dst").secure(trial).merge("security", new JsonObject().put("reloadMillis", 200))
                .device(LoopbackAgent.simulated("gpu0", 16 * MIB, 2)).start(vertx);
        target = dst.devices().find("gpu0");
        targetDigest = Sim.digest(target);
    }

    @AfterEach
    void stop() {
        log.close();
        vertx.close().await();
    }

    /** Nothing reached the destination's device: no migration, its state as it was, still running. */
    private void assertUntouched() {
        assertThat(dst.migrations().all()).isEmpty();
        assertThat(target.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(target)).isEqualTo(targetDigest);
    }

    /** What an attacker would write once connected: a HELLO for the device, then the start of a section. */
    private static Buffer helloAndData() {
        JsonObject hello = new JsonObject().put("protocol", Frames.PROTOCOL_VERSION).put("migration", "m-evil")
                .put("sourceAgent", "evil").put("chunkSize", 1 << 20)
                .put("devices", new JsonArray().add(new JsonObject().put("channel", 0).put("sourceDevice", "gpu0")
                        .put("targetDevice", "gpu0").put("flags", "STOP_COPY,P2P,PRE_COPY")));
        return Buffer.buffer().appendBuffer(Frames.control(FrameType.HELLO, 0, hello, 0))
                .appendBuffer(Frames.marker(0, VfioTag.DEV_SETUP_STATE, 1));
    }

    private NetClientOptions tlsClient(Path cert, Path key) {
        NetClientOptions o = new NetClientOptions().setSsl(true).setHostnameVerificationAlgorithm("")
                .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString()));
        if (cert != null) {
            o.setKeyCertOptions(new PemKeyCertOptions().setCertPath(cert.toString()).setKeyPath(key.toString()));
        }
        return o;
    }

    /**
     * Connects to the stream port with {@code options}, writes a HELLO and data, and waits until the agent has
     * closed the connection (or the connection never opened). Returns how many bytes came back.
     */
    private long attackStreamPort(NetClientOptions options) {
        NetClient client = vertx.createNetClient(options);
        clients.add(client);
        Promise<Void> closed = Promise.promise();
        long[] received = {0};
        // Connected on the event loop, so the handlers are set before the agent's close can be seen.
        Promise<NetSocket> connected = Promise.promise();
        vertx.getOrCreateContext().runOnContext(v -> client.connect(dst.streamPort(), "127.0.0.1").map(s -> {
            s.handler(b -> received[0] += b.length());
            s.closeHandler(x -> closed.tryComplete());
            return s;
        }).onComplete(connected));
        NetSocket socket;
        try {
            socket = connected.future().await();
        } catch (Exception refusedInTheHandshake) {
            return 0;
        }
        socket.write(helloAndData());
        closed.future().timeout(REFUSED_WITHIN.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS).await();
        return received[0];
    }

    private void assertRefusedOnceFrom(String what, String reason) {
        await("the refusal is logged").atMost(Duration.ofSeconds(5))
                .until(() -> !log.containing("refused " + what, "from 127.0.0.1", reason).isEmpty());
        assertThat(log.containing("refused " + what, "from 127.0.0.1", reason)).hasSize(1);
    }

    @Test
    void aPlaintextClientOnTheStreamPortIsRefused() {
        NetClientOptions plain = new NetClientOptions();
        attackStreamPort(plain);
        attackStreamPort(plain);
        assertUntouched();
        assertRefusedOnceFrom("a stream connection", "TLS:");
    }

    @Test
    void aClientWithoutACertificateIsRefused() {
        NetClientOptions noCertificate = tlsClient(null, null);
        assertThat(attackStreamPort(noCertificate)).isZero();
        attackStreamPort(noCertificate);
        assertUntouched();
        assertRefusedOnceFrom("a stream connection", "TLS:");
    }

    @Test
    void aCertificateFromAnotherCaIsRefused() throws Exception {
        TrialCredentials other = TrialCredentials.create(dir.resolve("other"), List.of("src"), 1);
        NetClientOptions foreign = tlsClient(other.certificate("src"), other.key("src"));
        assertThat(attackStreamPort(foreign)).isZero();
        attackStreamPort(foreign);
        assertUntouched();
        assertRefusedOnceFrom("a stream connection", "TLS:");
    }

    @Test
    void anExpiredCertificateIsRefused() throws Exception {
        Instant now = Instant.now();
        trial.reissue("expired", now.minus(Duration.ofDays(2)), now.minus(Duration.ofDays(1)));
        NetClientOptions expired = tlsClient(trial.certificate("expired"), trial.key("expired"));
        assertThat(attackStreamPort(expired)).isZero();
        attackStreamPort(expired);
        assertUntouched();
        assertRefusedOnceFrom("a stream connection", "TLS:");
    }

    @Test
    void anAgentWithItsCertificateMigratesOverTcpAndWss() {
        AgentVerticle src = LoopbackAgent.named("src").secure(trial)
                .device(LoopbackAgent.simulated("gpu0", 16 * MIB, 1))
                .device(LoopbackAgent.simulated("gpu1", 16 * MIB, 3)).start(vertx);
        MigrationStatus tcp = src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst),
                "gpu0", 0)).completion().await();
        assertThat(tcp.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(target)).isEqualTo(Sim.digest(src.devices().find("gpu0")));

        long before = Sim.digest(target);
        StreamEndpoint wss = StreamEndpoint.parse("wss://127.0.0.1:" + dst.apiPort());
        MigrationStatus ws = src.migrations().migrate(new MigrationRequest("gpu1", wss, "gpu0", 0)).completion()
                .await();
        assertThat(ws.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(target)).isNotEqualTo(before).isEqualTo(Sim.digest(src.devices().find("gpu1")));
        // In the clear, the agent's own client will not even try: the stream is wss:// while security is on.
        assertThatThrownBy(() -> src.migrations().migrate(new MigrationRequest("gpu1",
                StreamEndpoint.parse("ws://127.0.0.1:" + dst.apiPort()), "gpu0", 0)).completion().await())
                .hasMessageContaining("security is on, so the WebSocket stream is wss://");
    }

    private Throwable webSocketRefusal(WebSocketClientOptions options, boolean ssl) {
        WebSocketConnectOptions connect = new WebSocketConnectOptions().setHost("127.0.0.1").setPort(dst.apiPort())
                .setURI("/v1/stream").setSsl(ssl);
        try {
            WebSocketClient client = vertx.createWebSocketClient(options);
            clients.add(client);
            client.connect(connect).await();
        } catch (Throwable refused) {
            return refused;
        }
        throw new AssertionError("the WebSocket stream accepted a client it should have refused");
    }

    @Test
    void theWebSocketStreamNeedsTlsAndAClientCertificate() throws Exception {
        // ws:// against the TLS port: no plaintext stream path exists.
        webSocketRefusal(new WebSocketClientOptions(), false);
        // wss:// without a certificate: the API asks for one; the stream refuses without it.
        WebSocketClientOptions noCertificate = new WebSocketClientOptions().setSsl(true).setVerifyHost(false)
                .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString()));
        Throwable refused = webSocketRefusal(noCertificate, true);
        assertThat(refused).isInstanceOf(UpgradeRejectedException.class);
        assertThat(((UpgradeRejectedException) refused).getStatus()).isEqualTo(401);
        webSocketRefusal(noCertificate, true);
        // wss:// with a certificate from another CA.
        TrialCredentials other = TrialCredentials.create(dir.resolve("other"), List.of("src"), 1);
        webSocketRefusal(new WebSocketClientOptions(noCertificate).setKeyCertOptions(new PemKeyCertOptions()
                .setCertPath(other.certificate("src").toString()).setKeyPath(other.key("src").toString())), true);
        assertUntouched();
        assertRefusedOnceFrom("a WebSocket stream", "no client certificate");
    }

    private WebClient api(boolean trusted) {
        WebClientOptions o = new WebClientOptions().setDefaultHost("127.0.0.1").setDefaultPort(dst.apiPort());
        if (trusted) {
            o.setSsl(true).setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString()));
        }
        return WebClient.create(vertx, o);
    }

    private static String error(HttpResponse<Buffer> r) {
        return r.bodyAsJsonObject().getJsonObject("error").getString("message");
    }

    @Test
    void theApiNeedsATokenOfTheRightScope() throws Exception {
        WebClient https = api(true);
        JsonObject start = new JsonObject().put("device", "gpu0").put("targetDevice", "gpu0")
                .put("destination", "127.0.0.1:1");

        assertThat(https.get("/healthz").send().await().statusCode()).isEqualTo(200);
        HttpResponse<Buffer> none = https.get("/v1/devices").send().await();
        assertThat(none.statusCode()).isEqualTo(401);
        assertThat(none.getHeader("WWW-Authenticate")).startsWith("Bearer");
        assertThat(error(none)).contains("needs a bearer token");
        assertThat(https.get("/v1/devices").send().await().statusCode()).isEqualTo(401);
        assertThat(https.get("/metrics").send().await().statusCode()).isEqualTo(401);
        HttpResponse<Buffer> wrong = https.post("/v1/migrations").bearerTokenAuthentication("not-a-token-of-ours-at-all")
                .sendJsonObject(start).await();
        assertThat(wrong.statusCode()).isEqualTo(401);
        assertThat(error(wrong)).contains("does not know");

        String read = trial.token(Scope.READ);
        HttpResponse<Buffer> forbidden = https.post("/v1/migrations").bearerTokenAuthentication(read)
                .sendJsonObject(start).await();
        assertThat(forbidden.statusCode()).isEqualTo(403);
        assertThat(error(forbidden)).contains("needs a control token");
        assertThat(https.post("/v1/migrations/m-1/cancel").bearerTokenAuthentication(read).send().await()
                .statusCode()).isEqualTo(403);
        assertThat(https.get("/v1/devices").bearerTokenAuthentication(read).send().await().statusCode())
                .isEqualTo(200);
        JsonObject contract = https.get("/v1/openapi.json").bearerTokenAuthentication(read).send().await()
                .bodyAsJsonObject();
        assertThat(contract.getJsonObject("components").getJsonObject("securitySchemes").getJsonObject("token")
                .getString("scheme")).isEqualTo("bearer");
        assertThat(https.get("/metrics").bearerTokenAuthentication(read).send().await().bodyAsString())
                .contains("vmp_");
        // The event-bus bridge and the feeds are behind the same check.
        assertThat(https.get("/eventbus/info").send().await().statusCode()).isEqualTo(401);
        assertThat(https.get("/v1/events").send().await().statusCode()).isEqualTo(401);
        // And HTTP in the clear is not served at all.
        assertThatThrownBy(() -> api(false).get("/healthz").send().await()).isNotNull();
        assertUntouched();
        assertRefusedOnceFrom("GET /v1/devices", "no bearer token");
        assertRefusedOnceFrom("POST /v1/migrations", "a read token");
    }

    @Test
    void aControlTokenStartsAMigrationThatCompletes() throws Exception {
        AgentVerticle src = LoopbackAgent.named("src").secure(trial)
                .device(LoopbackAgent.simulated("gpu0", 16 * MIB, 1)).start(vertx);
        WebClient https = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                .setDefaultPort(src.apiPort()).setSsl(true)
                .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString())));
        HttpResponse<Buffer> created = https.post("/v1/migrations").bearerTokenAuthentication(trial.token(
                Scope.CONTROL)).sendJsonObject(new JsonObject().put("device", "gpu0").put("targetDevice", "gpu0")
                        .put("destination", "127.0.0.1:" + dst.streamPort())).await();
        assertThat(created.statusCode()).as(created.bodyAsString()).isEqualTo(201);
        MigrationRecord record = src.migrations().find(created.bodyAsJsonObject().getString("id"));
        await("the migration completes").atMost(Duration.ofSeconds(30))
                .until(() -> record.status().outcome() != MigrationStatus.Outcome.ACTIVE);
        assertThat(record.status().outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(target)).isEqualTo(Sim.digest(src.devices().find("gpu0")));
    }

    /** The serial of the certificate the stream port presents to a new handshake (with the source's identity). */
    private BigInteger servedSerial() {
        NetClient client = vertx.createNetClient(tlsClient(trial.certificate("src"), trial.key("src")));
        clients.add(client);
        NetSocket socket = client.connect(dst.streamPort(), "127.0.0.1").await();
        try {
            return ((X509Certificate) socket.peerCertificates().get(0)).getSerialNumber();
        } catch (javax.net.ssl.SSLPeerUnverifiedException e) {
            throw new AssertionError(e);
        } finally {
            socket.close();
        }
    }

    @Test
    void certificatesRotateUnderARunningMigration() throws Exception {
        AgentVerticle src = LoopbackAgent.named("src").secure(trial)
                .merge("security", new JsonObject().put("reloadMillis", 200))
                .device(LoopbackAgent.simulated("gpu0", 16 * MIB, 1).put("dirtyRate", "1MiB")).start(vertx);
        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("gpu0",
                LoopbackAgent.endpoint(dst), "gpu0", 0).withMode(MigrationRequest.Mode.PRECOPY)
                .withSwitchover(true, 300, 60_000));
        await("ready for switchover").atMost(Duration.ofSeconds(30))
                .until(() -> started.record().status().phase() == Phase.READY_FOR_SWITCHOVER);
        BigInteger old = servedSerial();

        Instant now = Instant.now();
        X509Certificate renewed = trial.reissue("dst", now.minusSeconds(60), now.plus(Duration.ofDays(2)));
        trial.reissue("src", now.minusSeconds(60), now.plus(Duration.ofDays(2)));
        assertThat(renewed.getSerialNumber()).isNotEqualTo(old);
        await("new handshakes get the new certificate").atMost(Duration.ofSeconds(20))
                .until(() -> servedSerial().equals(renewed.getSerialNumber()));
        assertThat(log.containing("the certificate files changed")).isNotEmpty();

        // The migration that began under the old certificates goes on and completes.
        assertThat(started.record().status().outcome()).isEqualTo(MigrationStatus.Outcome.ACTIVE);
        src.migrations().release(started.record().id()).await();
        assertThat(started.completion().await().outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(target)).isEqualTo(Sim.digest(src.devices().find("gpu0")));
        // And the next one runs under the new ones (each agent's client and server reloaded theirs).
        assertThat(src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst), "gpu0", 0))
                .completion().await().outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
    }

    @Test
    void aKeyReplacedBeforeItsCertificateIsNotTakenUntilBothAre() throws Exception {
        Credentials credentials = Credentials.load(vertx, SecurityOptions.fromJson(trial.security("src"))).await();
        TlsMaterial before = credentials.tls();
        List<TlsMaterial> changes = new java.util.concurrent.CopyOnWriteArrayList<>();
        credentials.onTlsChange(changes::add);
        // Another certificate's key where src's key was: the pair does not match.
        Files.copy(trial.key("dst"), trial.key("src"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        credentials.reload();
        assertThat(credentials.tls()).isSameAs(before);
        assertThat(changes).isEmpty();
        assertThat(log.containing("WARNING", "does not belong to the certificate in " + trial.certificate("src"),
                "the last good files stay in use")).hasSize(1);
        // Then both: taken.
        Instant now = Instant.now();
        trial.reissue("src", now.minusSeconds(60), now.plus(Duration.ofDays(1)));
        credentials.reload();
        assertThat(changes).hasSize(1);
        assertThat(credentials.tls().sameAs(before)).isFalse();
    }

    @Test
    void aMissingOrBrokenFileStopsTheAgentNamingIt() throws Exception {
        JsonObject missing = LoopbackAgent.named("src").secure(trial).config();
        missing.getJsonObject("security").getJsonObject("tls").put("keyPath", dir.resolve("nope.key").toString());
        assertThatThrownBy(() -> vertx.deployVerticle(new AgentVerticle(missing)).await())
                .hasMessageContaining("key file (security.tls.keyPath) " + dir.resolve("nope.key") + " does not exist");

        Path garbage = Files.writeString(dir.resolve("garbage.crt"), "not a certificate\n");
        JsonObject broken = LoopbackAgent.named("src").secure(trial).config();
        broken.getJsonObject("security").getJsonObject("tls").put("caPath", garbage.toString());
        assertThatThrownBy(() -> vertx.deployVerticle(new AgentVerticle(broken)).await())
                .hasMessageContaining(garbage.toString());

        JsonObject noTokens = LoopbackAgent.named("src").secure(trial).config();
        noTokens.getJsonObject("security").getJsonObject("tokens").put("control", dir.resolve("none").toString());
        assertThatThrownBy(() -> vertx.deployVerticle(new AgentVerticle(noTokens)).await())
                .hasMessageContaining("token file (security.tokens.control) " + dir.resolve("none"));

        JsonObject mismatched = LoopbackAgent.named("src").secure(trial).config();
        mismatched.getJsonObject("security").getJsonObject("tls").put("keyPath", trial.key("dst").toString());
        assertThatThrownBy(() -> vertx.deployVerticle(new AgentVerticle(mismatched)).await())
                .hasMessageContaining("does not belong to the certificate in " + trial.certificate("src"));
    }

    @Test
    void inTheClearOnlyWhenSaidSoAndWarnedAtStart() {
        try (LogCapture agentLog = LogCapture.of("io.vfioproxy.agent")) {
            LoopbackAgent.named("plain").start(vertx);
            assertThat(agentLog.containing("WARNING", "agent plain runs IN THE CLEAR")).hasSize(1);
        }
        JsonObject unset = LoopbackAgent.named("src").config();
        unset.put("security", new JsonObject());
        assertThatThrownBy(() -> vertx.deployVerticle(new AgentVerticle(unset)).await())
                .hasMessageContaining("security is on and security.tls.certPath is not set");
    }
}
