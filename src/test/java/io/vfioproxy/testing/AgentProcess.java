package io.vfioproxy.testing;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.cli.Main;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An agent in a JVM of its own ({@code vfio-migration-proxy agent --config FILE}), for tests where a process must
 * die: {@link #kill()} is SIGKILL, nothing runs after it.
 */
public final class AgentProcess implements AutoCloseable {

    private static final Pattern STARTED = Pattern.compile(
            "agent (\\S+): \\d+ device\\(s\\), stream endpoint on port (\\d+) \\([^)]*\\), API on port (-?\\d+)");

    private final Process process;
    private final List<String> output = new CopyOnWriteArrayList<>();
    private final int streamPort;
    private final int apiPort;

    private AgentProcess(Process process, int streamPort, int apiPort) {
        this.process = process;
        this.streamPort = streamPort;
        this.apiPort = apiPort;
    }

    /** Starts an agent with {@code config} and waits until it serves. */
    public static AgentProcess start(Path dir, JsonObject config) throws IOException, InterruptedException {
        Path file = Files.createTempFile(dir, "agent", ".json");
        Files.writeString(file, config.encodePrettily());
        String classpath = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-cp", classpath, Main.class.getName(), "agent", "--config",
                file.toString()).redirectErrorStream(true).start();
        List<String> lines = new CopyOnWriteArrayList<>();
        CompletableFuture<int[]> ports = new CompletableFuture<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(),
                    StandardCharsets.UTF_8))) {
                String line;
                while ((line = in.readLine()) != null) {
                    lines.add(line);
                    Matcher m = STARTED.matcher(line);
                    if (m.find()) {
                        ports.complete(new int[] {Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3))});
                    }
                }
            } catch (IOException e) {
                // The process ended.
            }
            ports.completeExceptionally(new IOException("the agent exited before it served: " + lines));
        }, "agent-process-output");
        reader.setDaemon(true);
        reader.start();
        int[] found;
        try {
            found = ports.get(120, TimeUnit.SECONDS);
        } catch (Exception e) {
            p.destroyForcibly();
            throw new IOException("the agent did not start: " + lines, e);
        }
        AgentProcess agent = new AgentProcess(p, found[0], found[1]);
        agent.output.addAll(lines);
        return agent;
    }

    public int streamPort() {
        return streamPort;
    }

    public int apiPort() {
        return apiPort;
    }

    /** SIGKILL: the JVM ends at once, no shutdown hook runs, its sockets are closed by the kernel. */
    public void kill() throws InterruptedException {
        process.destroyForcibly();
        process.waitFor(30, TimeUnit.SECONDS);
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    @Override
    public void close() throws InterruptedException {
        if (process.isAlive()) {
            process.destroy();
            if (!process.waitFor(30, TimeUnit.SECONDS)) {
                kill();
            }
        }
    }
}
