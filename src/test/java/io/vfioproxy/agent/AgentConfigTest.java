package io.vfioproxy.agent;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AgentConfigTest {

    private static JsonObject base() {
        return new JsonObject()
                .put("agent", new JsonObject().put("name", "a"))
                .put("stream", new JsonObject().put("port", 7070).put("host", "0.0.0.0"))
                .put("migration", new JsonObject().put("progressTimeoutMillis", 30000L).put("startDestination", true)
                        .put("chunkSize", 1048576));
    }

    @Test
    void environmentOverridesKeysOfTheFileWithTheirTypes() {
        JsonObject c = AgentConfig.applyEnvironment(base(), Map.of(
                "VMP_STREAM_PORT", "7071",
                "VMP_AGENT_NAME", "node-b",
                "VMP_MIGRATION_PROGRESS_TIMEOUT_MILLIS", "5000",
                "VMP_MIGRATION_STARTDESTINATION", "false",
                "VMP_DEVICES", "[{\"name\":\"sim9\"}]",
                "PATH", "/usr/bin"));
        assertThat(c.getJsonObject("stream").getValue("port")).isEqualTo(7071);
        assertThat(c.getJsonObject("agent").getString("name")).isEqualTo("node-b");
        assertThat(c.getJsonObject("migration").getValue("progressTimeoutMillis")).isEqualTo(5000L);
        assertThat(c.getJsonObject("migration").getBoolean("startDestination")).isFalse();
        assertThat(c.getJsonArray("devices").getJsonObject(0).getString("name")).isEqualTo("sim9");
    }

    @Test
    void aVariableThatNamesNothingIsAnError() {
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(base(), Map.of("VMP_STREAM_PROT", "1")))
                .hasMessage("VMP_STREAM_PROT names no configuration key: no 'prot' in the configuration file");
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(base(), Map.of("VMP_STREAM_PORT", "seventy")))
                .hasMessage("VMP_STREAM_PORT='seventy' is not a valid integer");
        assertThatThrownBy(() -> AgentConfig.applyEnvironment(base(), Map.of("VMP_DEVICES", "{")))
                .hasMessageStartingWith("VMP_DEVICES must be a JSON array");
    }

    @Test
    void loadsTheShippedConfiguration(@TempDir Path dir) throws Exception {
        Vertx vertx = Vertx.vertx();
        try {
            JsonObject shipped = AgentConfig.load(vertx, Path.of("conf/agent.json")).await();
            assertThat(shipped.getJsonObject("stream").getInteger("port")).isEqualTo(7070);
            assertThat(shipped.getJsonObject("api").getInteger("port")).isEqualTo(8080);
            assertThat(shipped.getJsonArray("devices")).isNotEmpty();
            Path missing = dir.resolve("none.json");
            assertThatThrownBy(() -> AgentConfig.load(vertx, missing).await())
                    .hasMessageContaining("configuration file " + missing + " does not exist");
            Path broken = Files.writeString(dir.resolve("broken.json"), "{not json");
            assertThatThrownBy(() -> AgentConfig.load(vertx, broken).await()).isNotNull();
        } finally {
            vertx.close().await();
        }
    }
}
