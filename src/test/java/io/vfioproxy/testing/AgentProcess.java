package io.vfioproxy.testing;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.chaos.AgentNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * An agent in a JVM of its own ({@code vfio-migration-proxy agent --config FILE}), for tests where a process must
 * die: {@link #kill()} is SIGKILL, nothing runs after it. The chaos harness's {@link AgentNode}, on the tests'
 * classpath.
 */
public final class AgentProcess implements AutoCloseable {

    private final AgentNode node;

    private AgentProcess(AgentNode node) {
        this.node = node;
    }

    /** Starts an agent with {@code config} and waits until it serves. */
    public static AgentProcess start(Path dir, JsonObject config) throws IOException, InterruptedException {
        Path file = Files.createTempFile(dir, "agent", ".json");
        String name = config.getJsonObject("agent", new JsonObject()).getString("name", "agent");
        // Failsafe runs the tests from a manifest-only jar; the agent's JVM needs the classpath it stands for.
        String classpath = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        AgentNode node = new AgentNode(name, file, config, classpath);
        node.start();
        return new AgentProcess(node);
    }

    public int streamPort() {
        return node.streamPort();
    }

    public int apiPort() {
        return node.apiPort();
    }

    /** SIGKILL: the JVM ends at once, no shutdown hook runs, its sockets are closed by the kernel. */
    public void kill() throws InterruptedException {
        node.kill();
    }

    public boolean isAlive() {
        return node.isAlive();
    }

    @Override
    public void close() throws InterruptedException {
        node.close();
    }
}
