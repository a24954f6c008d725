package io.vfioproxy.security;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import com.sun.management.UnixOperatingSystemMXBean;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;
import io.vertx.core.net.NetSocket;
import io.vertx.core.net.PemKeyCertOptions;
import io.vertx.core.net.PemTrustOptions;
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
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.testing.LogCapture;
import io.vfioproxy.testing.RawPeer;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The limits that keep a secure agent serving while peers misbehave: connections that never complete their
 * handshake, too many connections from one address or in all, too many migrations, a peer that goes silent.
 */
class LimitsIT {

    private static final long MIB = 1 << 20;
    private static final int IDLE_CONNECTIONS = 3000;

    @TempDir
    Path dir;

    private Vertx vertx;
    private TrialCredentials trial;
    private LogCapture log;
    /** Vert.x 5 closes a client nothing references at the next GC: the test keeps every one it made. */
    private final List<NetClient> clients = new ArrayList<>();

    @BeforeEach
    void start() throws Exception {
        vertx = Vertx.vertx();
        log = LogCapture.of("io.vfioproxy.security");
        trial = TrialCredentials.create(dir.resolve("certs"), List.of("src", "dst", "other", "api"), 1);
    }

    @AfterEach
    void stop() {
        log.close();
        vertx.close().await();
    }

    private NetClient client(String localAddress, boolean withCertificate) {
        NetClientOptions o = new NetClientOptions().setLocalAddress(localAddress);
        if (withCertificate) {
            o.setSsl(true).setHostnameVerificationAlgorithm("")
                    .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString()))
                    .setKeyCertOptions(new PemKeyCertOptions().setCertPath(trial.certificate("src").toString())
                            .setKeyPath(trial.key("src").toString()));
        }
        NetClient client = vertx.createNetClient(o);
        clients.add(client);
        return client;
    }

    private NetClient keep(NetClient client) {
        clients.add(client);
        return client;
    }

    /** As many idle connections as this machine's file limit allows for both ends, up to {@code wanted}. */
    private static int affordable(int wanted) {
        long max = ((UnixOperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getMaxFileDescriptorCount();
        int fit = (int) Math.min(wanted, (max - 1000) / 2);
        if (fit < wanted) {
            System.out.println("LimitsIT: the file limit (" + max + ") allows " + fit + " idle connections, not "
                    + wanted);
        }
        return fit;
    }

    @Test
    void idleConnectionsAreClosedByTheHandshakeTimeoutWhileAMigrationCompletes() {
        int count = affordable(IDLE_CONNECTIONS);
        AgentVerticle dst = LoopbackAgent.named("dst").secure(trial)
                .merge("stream", new JsonObject().put("maxConnections", count + 16)
                        .put("maxConnectionsPerPeer", count + 16).put("handshakeTimeoutMillis", 5000))
                .device(LoopbackAgent.simulated("gpu0", 8 * MIB, 2)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src").secure(trial)
                .device(LoopbackAgent.simulated("gpu0", 8 * MIB, 1)).start(vertx);

        // Idle: TCP connections from another address that never begin TLS.
        NetClient idle = client("127.0.0.2", false);
        AtomicInteger closed = new AtomicInteger();
        for (int batch = 0; batch < count; batch += 500) {
            List<Future<NetSocket>> connecting = new ArrayList<>();
            for (int i = batch; i < Math.min(count, batch + 500); i++) {
                connecting.add(idle.connect(dst.streamPort(), "127.0.0.1")
                        .onSuccess(s -> s.closeHandler(v -> closed.incrementAndGet())));
            }
            Future.all(connecting).await();
        }

        MigrationStatus done = src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst),
                "gpu0", 0)).completion().await();
        assertThat(done.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(dst.devices().find("gpu0"))).isEqualTo(Sim.digest(src.devices().find("gpu0")));

        await("every idle connection is closed by the agent").atMost(Duration.ofSeconds(60))
                .until(() -> closed.get() == count);
        assertThat(log.containing("refused a stream connection from 127.0.0.2", "TLS:", "handshake timed out"))
                .hasSize(1);
    }

    @Test
    void aPeerThatCompletesTlsButSendsNoHelloIsClosed() throws Exception {
        AgentVerticle dst = LoopbackAgent.named("dst").secure(trial)
                .merge("stream", new JsonObject().put("handshakeTimeoutMillis", 1000))
                .device(LoopbackAgent.simulated("gpu0", 8 * MIB, 2)).start(vertx);
        AtomicInteger closed = new AtomicInteger();
        connect(client("127.0.0.1", true), dst.streamPort(), closed);
        await("the agent closes a connection without a first frame").atMost(Duration.ofSeconds(20))
                .until(() -> closed.get() == 1);
        assertThat(dst.migrations().all()).isEmpty();
    }

    @Test
    void connectionsBeyondThePerPeerAndTotalLimitsAreRefusedAtOnce() {
        // The handshake timeout is far above the waits here: what closes is closed by a limit.
        AgentVerticle dst = LoopbackAgent.named("dst").secure(trial)
                .merge("stream", new JsonObject().put("maxConnections", 6).put("maxConnectionsPerPeer", 4)
                        .put("handshakeTimeoutMillis", 120_000))
                .device(LoopbackAgent.simulated("gpu0", 8 * MIB, 2)).start(vertx);
        List<NetSocket> held = new ArrayList<>();
        AtomicInteger heldClosed = new AtomicInteger();
        NetClient third = client("127.0.0.3", false);
        for (int i = 0; i < 4; i++) {
            NetSocket s = third.connect(dst.streamPort(), "127.0.0.1").await();
            s.closeHandler(v -> heldClosed.incrementAndGet());
            held.add(s);
        }
        assertClosedByTheAgent(third, dst.streamPort());
        assertThat(log.containing("refused a stream connection from 127.0.0.3",
                "stream.maxConnectionsPerPeer")).hasSize(1);

        // Another address is let in, up to the endpoint's total: 4 + 2.
        NetClient fourth = client("127.0.0.4", true);
        NetSocket admitted = fourth.connect(dst.streamPort(), "127.0.0.1").await();
        assertThat(admitted.isSsl()).isTrue();
        held.add(fourth.connect(dst.streamPort(), "127.0.0.1").await());
        assertClosedByTheAgent(client("127.0.0.5", false), dst.streamPort());
        assertThat(log.containing("refused a stream connection from 127.0.0.5", "stream.maxConnections)"))
                .hasSize(1);
        assertThat(heldClosed.get()).as("the connections within the limits are held").isZero();

        // Closing frees the permits.
        held.forEach(s -> s.close().await());
        await("the agent counts the closed connections out").atMost(Duration.ofSeconds(20)).ignoreExceptions()
                .until(() -> {
            NetSocket s = client("127.0.0.3", true).connect(dst.streamPort(), "127.0.0.1").await();
            s.close();
            return true;
        });
        admitted.close().await();
    }

    @Test
    void apiConnectionsBeyondThePerPeerLimitAreClosed() {
        AgentVerticle agent = LoopbackAgent.named("api").secure(trial)
                .merge("api", new JsonObject().put("maxConnectionsPerPeer", 2)).start(vertx);
        NetClient https = keep(vertx.createNetClient(new NetClientOptions().setSsl(true).setHostnameVerificationAlgorithm("")
                .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString()))));
        AtomicInteger heldClosed = new AtomicInteger();
        List<NetSocket> held = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            NetSocket s = https.connect(agent.apiPort(), "127.0.0.1").await();
            s.closeHandler(v -> heldClosed.incrementAndGet());
            held.add(s);
        }
        assertClosedByTheAgent(https, agent.apiPort());
        assertThat(log.containing("refused an API connection from 127.0.0.1", "api.maxConnectionsPerPeer"))
                .hasSize(1);
        assertThat(heldClosed.get()).isZero();
        held.forEach(s -> s.close().await());
    }

    /**
     * Connects on the event loop, so the close handler is set before the agent's close can be seen; {@code closed}
     * counts the close.
     */
    private NetSocket connect(NetClient client, int port, AtomicInteger closed) {
        Promise<NetSocket> connected = Promise.promise();
        vertx.getOrCreateContext().runOnContext(v -> client.connect(port, "127.0.0.1").map(s -> {
            s.closeHandler(x -> closed.incrementAndGet());
            return s;
        }).onComplete(connected));
        return connected.future().await();
    }

    private void assertClosedByTheAgent(NetClient client, int port) {
        AtomicInteger closed = new AtomicInteger();
        connect(client, port, closed);
        await("the agent closes the connection").atMost(Duration.ofSeconds(20)).until(() -> closed.get() == 1);
    }

    @Test
    void migrationsBeyondTheAgentsMaximumAreRefused() {
        JsonObject one = new JsonObject().put("maxConcurrent", 1);
        AgentVerticle dst = LoopbackAgent.named("dst").secure(trial).merge("migration", one)
                .device(LoopbackAgent.simulated("gpu0", 8 * MIB, 2))
                .device(LoopbackAgent.simulated("gpu1", 8 * MIB, 4)).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src").secure(trial).merge("migration", one.copy())
                .device(LoopbackAgent.simulated("gpu0", 8 * MIB, 1))
                .device(LoopbackAgent.simulated("gpu1", 8 * MIB, 3)).start(vertx);
        AgentVerticle other = LoopbackAgent.named("other").secure(trial)
                .device(LoopbackAgent.simulated("gpu1", 8 * MIB, 3)).start(vertx);
        MigrationService.Started held = src.migrations().migrate(new MigrationRequest("gpu0",
                LoopbackAgent.endpoint(dst), "gpu0", 0).withMode(MigrationRequest.Mode.PRECOPY)
                .withSwitchover(true, 300, 60_000));
        await("the first migration holds before its switchover").atMost(Duration.ofSeconds(30))
                .until(() -> held.record().status().phase() == Phase.READY_FOR_SWITCHOVER);

        // The source agent runs its one migration.
        assertThatThrownBy(() -> src.migrations().migrate(new MigrationRequest("gpu1", LoopbackAgent.endpoint(dst),
                "gpu1", 0))).hasMessageContaining("runs 1 migrations already (migration.maxConcurrent)");
        // The destination agent too: another source's migration is refused, and its device left as it was.
        DeviceHandle gpu1 = dst.devices().find("gpu1");
        long before = Sim.digest(gpu1);
        assertThatThrownBy(() -> other.migrations().migrate(new MigrationRequest("gpu1",
                LoopbackAgent.endpoint(dst), "gpu1", 0)).completion().await())
                .hasMessageContaining("(migration.maxConcurrent)");
        assertThat(other.devices().find("gpu1").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(gpu1.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(gpu1)).isEqualTo(before);

        src.migrations().release(held.record().id()).await();
        assertThat(held.completion().await().outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
    }

    @Test
    void aSourceThatGoesSilentMidSectionIsTimedOutAndTheDestinationReset() {
        AgentVerticle dst = LoopbackAgent.named("dst")
                .merge("migration", new JsonObject().put("progressTimeoutMillis", 1500))
                .device(LoopbackAgent.simulated("gpu0", 4 * MIB, 2)).start(vertx);
        DeviceHandle device = dst.devices().find("gpu0");
        long before = Sim.digest(device);
        RawPeer peer = RawPeer.connect(vertx, dst.streamPort());
        JsonObject hello = new JsonObject().put("protocol", Frames.PROTOCOL_VERSION).put("migration", "m-silent")
                .put("sourceAgent", "raw").put("chunkSize", 1 << 20)
                .put("devices", new JsonArray().add(new JsonObject().put("channel", 0).put("sourceDevice", "gpu0")
                        .put("targetDevice", "gpu0").put("flags", "STOP_COPY,P2P,PRE_COPY")
                        .put("identity", new JsonObject().put("backend", "simulated")
                                .put("model", device.identity().model()).put("driver", "simulated")
                                .put("stateSize", 4 * MIB))));
        peer.send(Frames.control(FrameType.HELLO, 0, hello, 0));
        peer.await(FrameType.ACCEPT);
        peer.send(Frames.marker(0, VfioTag.DEV_SETUP_STATE, 1));
        // ... and nothing more.
        peer.awaitClosed();
        MigrationRecord record = dst.migrations().find("m-silent");
        assertThat(record.status().outcome()).isEqualTo(MigrationStatus.Outcome.FAILED);
        assertThat(record.status().error()).contains("nothing arrived from 127.0.0.1").contains("phase RESUMING");
        await("the destination device is reset").atMost(Duration.ofSeconds(20))
                .until(() -> record.toJson().containsKey("deviceState"));
        assertThat(device.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(device)).isEqualTo(before);
    }
}
