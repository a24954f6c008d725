package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.SelfSignedCertificate;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Mutual TLS between agents on the stream endpoint. */
@ExtendWith(NoBufferLeaks.class)
class TlsIT {

    private Vertx vertx;
    private SelfSignedCertificate ours;
    private SelfSignedCertificate theirs;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        ours = SelfSignedCertificate.create("node");
        theirs = SelfSignedCertificate.create("intruder");
    }

    @AfterEach
    void stop() {
        vertx.close().await();
        ours.delete();
        theirs.delete();
    }

    private static LoopbackAgent agent(String name, SelfSignedCertificate identity, SelfSignedCertificate trusted,
            long seed) {
        return LoopbackAgent.named(name).withoutApi()
                .set("stream", "tls", new JsonObject().put("certPath", identity.certificatePath())
                        .put("keyPath", identity.privateKeyPath()).put("trustPath", trusted.certificatePath()))
                .device(LoopbackAgent.simulated("gpu0", 64 << 20, seed));
    }

    @Test
    void agentsThatTrustEachOtherMigrateOverMutualTls() {
        AgentVerticle dst = agent("dst", ours, ours, 2).start(vertx);
        AgentVerticle src = agent("src", ours, ours, 1).start(vertx);
        MigrationStatus r = src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst), "gpu0", 0)).completion().await();
        assertThat(r.outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);
        assertThat(Sim.digest(dst.devices().find("gpu0"))).isEqualTo(Sim.digest(src.devices().find("gpu0")));
    }

    @Test
    void aSourceTheDestinationDoesNotTrustIsRefusedAndKeepsRunning() {
        AgentVerticle dst = agent("dst", ours, ours, 2).start(vertx);
        AgentVerticle src = agent("src", theirs, ours, 1).start(vertx);
        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst), "gpu0", 0));
        assertThatThrownBy(() -> started.completion().await()).hasMessageContaining("failed in phase HANDSHAKE")
                .hasMessageContaining("bad_certificate");
        assertThat(src.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(dst.migrations().all()).isEmpty();
        assertThat(dst.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
    }

    @Test
    void aPlaintextSourceCannotTalkToATlsDestination() {
        AgentVerticle dst = agent("dst", ours, ours, 2).start(vertx);
        AgentVerticle src = LoopbackAgent.named("src").merge("migration", new JsonObject().put("progressTimeoutMillis", 2000))
                .device(LoopbackAgent.simulated("gpu0", 64 << 20, 1)).start(vertx);
        MigrationService.Started started = src.migrations().migrate(new MigrationRequest("gpu0", LoopbackAgent.endpoint(dst), "gpu0", 0));
        assertThatThrownBy(() -> started.completion().await()).isInstanceOf(MigrationException.class);
        assertThat(src.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(dst.migrations().all()).isEmpty();
    }
}
