package io.vfioproxy.migration;

import static io.vfioproxy.testing.Agents.device;
import static io.vfioproxy.testing.Agents.digest;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.SelfSignedCertificate;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.testing.Agents;
import io.vfioproxy.testing.NoBufferLeaks;
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

    private static JsonObject agent(String name, SelfSignedCertificate identity, SelfSignedCertificate trusted,
            long seed) {
        JsonObject stream = new JsonObject().put("host", "127.0.0.1").put("port", 0)
                .put("tls", new JsonObject().put("certPath", identity.certificatePath())
                        .put("keyPath", identity.privateKeyPath()).put("trustPath", trusted.certificatePath()));
        return new JsonObject().put("agent", new JsonObject().put("name", name)).put("stream", stream)
                .put("api", new JsonObject().put("enabled", false))
                .put("devices", new JsonArray().add(device("gpu0", 64 << 20, seed)));
    }

    @Test
    void agentsThatTrustEachOtherMigrateOverMutualTls() {
        AgentVerticle dst = Agents.start(vertx, agent("dst", ours, ours, 2));
        AgentVerticle src = Agents.start(vertx, agent("src", ours, ours, 1));
        MigrationRecord r = Agents.migrate(vertx, src, "gpu0", Agents.endpoint(dst), "gpu0").completion().await();
        assertThat(r.outcome()).isEqualTo(MigrationRecord.Outcome.COMPLETED);
        assertThat(digest(dst.devices().find("gpu0"))).isEqualTo(digest(src.devices().find("gpu0")));
    }

    @Test
    void aSourceTheDestinationDoesNotTrustIsRefusedAndKeepsRunning() {
        AgentVerticle dst = Agents.start(vertx, agent("dst", ours, ours, 2));
        AgentVerticle src = Agents.start(vertx, agent("src", theirs, ours, 1));
        MigrationService.Started started = Agents.migrate(vertx, src, "gpu0", Agents.endpoint(dst), "gpu0");
        assertThatThrownBy(() -> started.completion().await()).hasMessageContaining("failed in phase HANDSHAKE")
                .hasMessageContaining("bad_certificate");
        assertThat(src.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(dst.migrations().all()).isEmpty();
        assertThat(dst.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
    }

    @Test
    void aPlaintextSourceCannotTalkToATlsDestination() {
        AgentVerticle dst = Agents.start(vertx, agent("dst", ours, ours, 2));
        AgentVerticle src = Agents.start(vertx, Agents.config("src", new JsonObject().put("progressTimeoutMillis", 2000),
                device("gpu0", 64 << 20, 1)));
        MigrationService.Started started = Agents.migrate(vertx, src, "gpu0", Agents.endpoint(dst), "gpu0");
        assertThatThrownBy(() -> started.completion().await()).isInstanceOf(MigrationException.class);
        assertThat(src.devices().find("gpu0").state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(dst.migrations().all()).isEmpty();
    }
}
