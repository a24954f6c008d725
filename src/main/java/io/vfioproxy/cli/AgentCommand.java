package io.vfioproxy.cli;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentConfig;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.AgentVertx;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Runs one node agent until it is stopped. */
@Command(name = "agent", mixinStandardHelpOptions = true,
        description = "Run a node agent: its devices, the stream endpoint (port 7070) and the HTTP API (8080). "
                + "Environment variables VMP_<SECTION>_<KEY> override the configuration file.")
public final class AgentCommand implements Callable<Integer> {

    @Option(names = "--config", defaultValue = "conf/agent.json", description = "configuration file (${DEFAULT-VALUE})")
    Path config;

    @Override
    public Integer call() throws Exception {
        JsonObject configuration;
        // The configuration decides the Vert.x (clustered or not): it is read with one of its own first.
        Vertx reader = Vertx.vertx();
        try {
            configuration = AgentConfig.load(reader, config, System.getenv()).await();
        } catch (Exception e) {
            System.err.println("agent failed to start: " + e.getMessage());
            return 1;
        } finally {
            reader.close().await();
        }
        AgentVertx runtime;
        try {
            runtime = AgentVertx.create(configuration).await();
        } catch (Exception e) {
            System.err.println("agent failed to start: " + e.getMessage());
            return 1;
        }
        Vertx vertx = runtime.vertx();
        AgentVerticle agent;
        try {
            agent = new AgentVerticle(configuration, runtime.registry(), runtime.cluster());
            vertx.deployVerticle(agent).await();
        } catch (Exception e) {
            System.err.println("agent failed to start: " + e.getMessage());
            vertx.close().await();
            return 1;
        }
        System.out.printf("agent %s: %d device(s), stream endpoint on port %d (%s), API on port %d (%s)%n",
                agent.name(), agent.devices().all().size(), agent.streamPort(),
                agent.secure() ? "mutual TLS" : "IN THE CLEAR", agent.apiPort(),
                agent.secure() ? "HTTPS, bearer tokens" : "IN THE CLEAR, no tokens");
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            vertx.close().toCompletionStage().toCompletableFuture().join();
            stopped.countDown();
        }, "vmp-shutdown"));
        stopped.await();
        return 0;
    }
}
