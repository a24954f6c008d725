package io.vfioproxy.cli;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import java.net.URI;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Asks a running source agent to migrate one of its devices, and follows the migration to its end. */
@Command(name = "migrate", mixinStandardHelpOptions = true,
        description = "Ask a running source agent to migrate one of its devices to a destination agent and follow "
                + "it to the end. Exit code 0 when it completed, 1 when it failed, 2 when the request was refused.")
public final class MigrateCommand implements Callable<Integer> {

    @Option(names = "--agent", defaultValue = "http://localhost:8080",
            description = "the source agent's API (${DEFAULT-VALUE})")
    URI agent;

    @Option(names = "--device", required = true, description = "the device on the source agent")
    String device;

    @Option(names = {"--to", "--destination"}, required = true,
            description = "the destination agent's stream endpoint, host:port (port 7070 by default)")
    String destination;

    @Option(names = "--target-device", description = "the device on the destination (default: the same name)")
    String targetDevice;

    @Option(names = "--no-wait", description = "return once the migration started")
    boolean noWait;

    @Override
    public Integer call() {
        Vertx vertx = Vertx.vertx();
        WebClient client = WebClient.create(vertx);
        try {
            JsonObject request = new JsonObject().put("device", device).put("destination", destination)
                    .put("targetDevice", targetDevice == null ? device : targetDevice);
            HttpResponse<Buffer> created = client.postAbs(agent.resolve("/v1/migrations").toString())
                    .sendJsonObject(request).await();
            JsonObject body = created.bodyAsJsonObject();
            if (created.statusCode() != 201) {
                System.err.println("migration refused (" + created.statusCode() + "): "
                        + body.getJsonObject("error", new JsonObject()).getString("message", body.encode()));
                return 2;
            }
            String id = body.getString("id");
            System.out.println("migration " + id + " started: " + device + " -> " + destination);
            if (noWait) {
                return 0;
            }
            ProgressBar bar = new ProgressBar(System.err);
            String url = agent.resolve("/v1/migrations/" + id).toString();
            JsonObject status = body;
            while ("active".equals(status.getString("outcome"))) {
                Thread.sleep(100);
                status = client.getAbs(url).send().await().bodyAsJsonObject();
                bar.update(status.getString("phase"), status.getLong("dataBytes", 0L),
                        status.getLong("stateSize", 0L));
            }
            bar.finish();
            System.out.println(status.encodePrettily());
            return "completed".equals(status.getString("outcome")) ? 0 : 1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return 1;
        } catch (RuntimeException e) {
            System.err.println("cannot reach the agent at " + agent + ": " + e.getMessage());
            return 2;
        } finally {
            client.close();
            vertx.close().await();
        }
    }
}
