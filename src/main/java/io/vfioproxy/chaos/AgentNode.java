package io.vfioproxy.chaos;

import io.vertx.core.json.JsonObject;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An agent in a JVM of its own, as on a node: started from a configuration file, killed with SIGKILL, started again
 * on the same file (its journal and its file-backed devices are where it left them). Reads the ports it serves on
 * from its start line.
 */
public final class AgentNode implements AutoCloseable {

    private static final Pattern STARTED = Pattern.compile(
            "agent (\\S+): \\d+ device\\(s\\), stream endpoint on port (\\d+) \\([^)]*\\), API on port (-?\\d+)");

    private final String name;
    private final Path config;
    private final String classpath;
    private Process process;
    private int streamPort;
    private int apiPort;

    /**
     * @param file where the configuration is written; the agent's output goes beside it, to NAME.log
     * @param classpath the classpath the agent's JVM runs with
     */
    public AgentNode(String name, Path file, JsonObject config, String classpath) throws IOException {
        this.name = name;
        this.config = file;
        this.classpath = classpath;
        Files.writeString(file, config.encodePrettily());
    }

    /** An agent named {@code name} with its configuration in {@code dir}, on this JVM's classpath. */
    AgentNode(String name, Path dir, JsonObject config) throws IOException {
        this(name, dir.resolve(name + ".json"), config, System.getProperty("java.class.path"));
    }

    String name() {
        return name;
    }

    /** Starts the agent and waits until it serves. */
    public void start() throws IOException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        process = new ProcessBuilder(java, "-cp", classpath,
                "io.vfioproxy.cli.Main", "agent", "--config", config.toString())
                .redirectErrorStream(true).start();
        Path log = config.resolveSibling(name + ".log");
        CompletableFuture<int[]> ports = new CompletableFuture<>();
        Process p = process;
        Thread reader = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(),
                    StandardCharsets.UTF_8))) {
                String line;
                while ((line = in.readLine()) != null) {
                    // Everything the agent says, across its restarts, for whoever reads a problem.
                    Files.writeString(log, line + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                            StandardOpenOption.APPEND);
                    Matcher m = STARTED.matcher(line);
                    if (m.find()) {
                        ports.complete(new int[] {Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3))});
                    }
                }
            } catch (IOException e) {
                // The process ended.
            }
            ports.completeExceptionally(new IOException("agent " + name + " exited before it served"));
        }, "chaos-" + name + "-output");
        reader.setDaemon(true);
        reader.start();
        try {
            int[] found = ports.get(120, TimeUnit.SECONDS);
            streamPort = found[0];
            apiPort = found[1];
        } catch (Exception e) {
            p.destroyForcibly();
            throw new IOException("agent " + name + " did not start (its output: " + log + "): " + e.getMessage(), e);
        }
    }

    public int streamPort() {
        return streamPort;
    }

    public int apiPort() {
        return apiPort;
    }

    public boolean isAlive() {
        return process != null && process.isAlive();
    }

    long pid() {
        return process.pid();
    }

    /** SIGKILL: nothing of the agent runs after it; the kernel closes its fds. */
    public void kill() throws InterruptedException {
        process.destroyForcibly();
        process.waitFor(30, TimeUnit.SECONDS);
    }

    /** The agent's open fds and threads now, from /proc; -1 where /proc cannot tell. */
    long[] resources() {
        return new long[] {count(Path.of("/proc", Long.toString(pid()), "fd")),
            count(Path.of("/proc", Long.toString(pid()), "task"))};
    }

    private static long count(Path dir) {
        try (var entries = Files.list(dir)) {
            return entries.count();
        } catch (IOException e) {
            return -1;
        }
    }

    @Override
    public void close() throws InterruptedException {
        if (process != null && process.isAlive()) {
            process.destroy();
            if (!process.waitFor(30, TimeUnit.SECONDS)) {
                kill();
            }
        }
    }
}
