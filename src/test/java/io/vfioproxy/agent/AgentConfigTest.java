package io.vfioproxy.agent;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.cluster.ClusterOptions;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AgentConfigTest {

    private Vertx vertx;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    private static JsonObject base() {
        return new JsonObject()
                .put("agent", new JsonObject().put("name", "a"))
                .put("stream", new JsonObject().put("port", 7070).put("host", "0.0.0.0"))
                .put("security", new JsonObject().put("insecure", false)
                        .put("tls", new JsonObject().put("certPath", "/etc/tls/tls.crt")))
                .put("migration", new JsonObject().put("progressTimeoutMillis", 30000L).put("startDestination", true)
                        .put("chunkSize", 1048576))
                .put("relay", new JsonObject().put("allowedTargets", new JsonArray()))
                .put("devices", new JsonArray());
    }

    @Test
    void environmentOverridesKeysAtAnyDepthWithTheirTypes() {
        JsonObject c = AgentConfig.applyEnvironment(base(), Map.of(
                "VMP_STREAM_PORT", "7071",
                "VMP_AGENT_NAME", "node-b",
                "VMP_MIGRATION_PROGRESS_TIMEOUT_MILLIS", "5000",
                "VMP_MIGRATION_STARTDESTINATION", "false",
                "VMP_SECURITY_TLS_CERT_PATH", "/tls/tls.crt",
                "VMP_SECURITY_INSECURE", "true",
                "VMP_RELAY_ALLOWED_TARGETS", "[\"unix:/var/run/kubevirt/\"]",
                "VMP_DEVICES", "[{\"name\":\"sim9\"}]",
                "PATH", "/usr/bin"));
        assertThat(c.getJsonObject("stream").getValue("port")).isEqualTo(7071);
        assertThat(c.getJsonObject("agent").getString("name")).isEqualTo("node-b");
        assertThat(c.getJsonObject("migration").getValue("progressTimeoutMillis")).isEqualTo(5000L);
        assertThat(c.getJsonObject("migration").getBoolean("startDestination")).isFalse();
        assertThat(c.getJsonObject("security").getJsonObject("tls").getString("certPath")).isEqualTo("/tls/tls.crt");
        assertThat(c.getJsonObject("security").getBoolean("insecure")).isTrue();
        assertThat(c.getJsonObject("relay").getJsonArray("allowedTargets").getString(0))
                .isEqualTo("unix:/var/run/kubevirt/");
        assertThat(c.getJsonArray("devices").getJsonObject(0).getString("name")).isEqualTo("sim9");
    }

    @Test
    void theClusterIsConfiguredFromTheEnvironmentAsAPodGetsIt() {
        JsonObject c = AgentConfig.applyEnvironment(AgentConfig.defaults(), Map.of(
                "VMP_CLUSTER_ENABLED", "true",
                "VMP_CLUSTER_HOST", "10.1.2.3",
                "VMP_CLUSTER_PORT", "5801",
                "VMP_CLUSTER_MEMBERS", "10.1.2.3:5801, 10.1.2.4:5801",
                "VMP_CLUSTER_KUBERNETES_SERVICE_DNS", "agents.vfio.svc.cluster.local"));
        ClusterOptions cluster = ClusterOptions.fromJson(c.getJsonObject("cluster"));
        assertThat(cluster.enabled()).isTrue();
        assertThat(cluster.host()).isEqualTo("10.1.2.3");
        assertThat(cluster.port()).isEqualTo(5801);
        assertThat(cluster.members()).containsExactly("10.1.2.3:5801", "10.1.2.4:5801");
        assertThat(cluster.kubernetes().serviceDns()).isEqualTo("agents.vfio.svc.cluster.local");
        assertThat(ClusterOptions.fromJson(AgentConfig.defaults().getJsonObject("cluster")).enabled())
                .as("off by default").isFalse();
    }

    @Test
    void aClusterThatCouldNotFormStopsTheAgentNamingTheKey() {
        JsonObject alone = AgentConfig.defaults().getJsonObject("cluster").put("enabled", true);
        assertThatThrownBy(() -> ClusterOptions.fromJson(alone))
                .hasMessageStartingWith("cluster.enabled is true but there is no way to find the other agents");
        assertThatThrownBy(() -> ClusterOptions.fromJson(alone.copy().put("members", new JsonArray().add("a b"))))
                .hasMessage("cluster.members: 'a b' is not host or host:port");
        assertThatThrownBy(() -> ClusterOptions.fromJson(alone.copy().put("port", 0)
                .put("members", new JsonArray().add("a")))).hasMessageStartingWith("cluster.port 0");
        assertThatThrownBy(() -> ClusterOptions.fromJson(alone.copy().put("kubernetes",
                new JsonObject().put("enabled", true)))).hasMessageContaining("neither serviceDns");
    }

    @Test
    void aVariableThatNamesNothingOrHasABadValueIsAnError() {
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(base(), Map.of("VMP_STREAM_PROT", "1")))
                .hasMessage("VMP_STREAM_PROT names no configuration key: no stream.prot (or a key of those words) in "
                        + "the configuration");
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(base(), Map.of("VMP_SECURITY_TLS_CERT", "x")))
                .hasMessageStartingWith("VMP_SECURITY_TLS_CERT names no configuration key");
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(base(), Map.of("VMP_STREAM_PORT", "seventy")))
                .hasMessage("VMP_STREAM_PORT='seventy' is not a valid integer for stream.port");
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(base(), Map.of("VMP_SECURITY_INSECURE", "yes")))
                .hasMessage("VMP_SECURITY_INSECURE='yes' is not a valid boolean for security.insecure");
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(base(), Map.of("VMP_DEVICES", "{")))
                .hasMessage("VMP_DEVICES='{' is not a valid JSON array for devices");
    }

    @Test
    void aVariableThatCouldNameTwoKeysIsAnError() {
        JsonObject twice = new JsonObject().put("a", new JsonObject().put("bC", 1).put("b", new JsonObject()
                .put("c", 2)));
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(twice, Map.of("VMP_A_B_C", "3")))
                .hasMessage("VMP_A_B_C is ambiguous: it names a.b.c and a.bC");
    }

    @Test
    void theDefaultsAreTheShippedConfiguration() throws Exception {
        JsonObject shipped = new JsonObject(Files.readString(Path.of("conf/agent.json")));
        assertThat(AgentConfig.defaults()).isEqualTo(shipped);
    }

    @Test
    void loadsAFileOverTheDefaultsAndTheEnvironmentOverBoth(@TempDir Path dir) throws Exception {
        Path partial = Files.writeString(dir.resolve("partial.json"),
                new JsonObject().put("api", new JsonObject().put("port", 9090)).encode());
        JsonObject loaded = AgentConfig.load(vertx, partial, Map.of("VMP_STREAM_PORT", "7171")).await();
        assertThat(loaded.getJsonObject("api").getInteger("port")).isEqualTo(9090);
        assertThat(loaded.getJsonObject("stream").getInteger("port")).isEqualTo(7171);
        // Keys the file does not name come from the defaults.
        assertThat(loaded.getJsonObject("migration")).isEqualTo(AgentConfig.defaults().getJsonObject("migration"));
        assertThat(loaded.getJsonObject("api").getString("host"))
                .isEqualTo(AgentConfig.defaults().getJsonObject("api").getString("host"));
    }

    @Test
    void aMissingOrBrokenFileOrABadVariableFailsTheLoadWithTheName(@TempDir Path dir) throws Exception {
        Path missing = dir.resolve("none.json");
        assertThatThrownBy(() -> AgentConfig.load(vertx, missing, Map.of()).await())
                .hasMessage("configuration file " + missing + " does not exist");
        Path broken = Files.writeString(dir.resolve("broken.json"), "{not json");
        assertThatThrownBy(() -> AgentConfig.load(vertx, broken, Map.of()).await())
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageStartingWith("configuration file " + broken + " cannot be read: ");
        Path fine = Files.writeString(dir.resolve("fine.json"), "{}");
        assertThatThrownBy(() -> AgentConfig.load(vertx, fine, Map.of("VMP_API_PROT", "1")).await())
                .hasMessageStartingWith("VMP_API_PROT names no configuration key");
    }
}
