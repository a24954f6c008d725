package io.vfioproxy.cli;

import io.vertx.core.Promise;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Asks a running source agent to migrate one of its devices, and follows the migration to its end. */
@Command(name = "migrate", mixinStandardHelpOptions = true,
        description = "Ask a running source agent to migrate one of its devices to a destination agent and follow "
                + "it to the end. Exit code 0 when it completed, 1 when it failed, 2 when the request was refused.")
public final class MigrateCommand implements Callable<Integer> {

    @Mixin
    AgentClient api;

    @Option(names = "--device", required = true,
            description = "a device on the source agent; repeat it to move several devices as one migration")
    List<String> devices;

    @Option(names = {"--to", "--destination"}, required = true,
            description = "the destination agent: host:port (its stream endpoint, 7070) or ws://host:8080")
    String destination;

    @Option(names = "--target-device",
            description = "the device on the destination, one per --device in order (default: the same names)")
    List<String> targetDevices;

    @Option(names = "--mode", defaultValue = "precopy", description = "precopy or stop-copy (${DEFAULT-VALUE})")
    String mode;

    @Option(names = "--switchover", defaultValue = "auto",
            description = "auto, or manual: hold when ready until POST /v1/migrations/ID/switchover (${DEFAULT-VALUE})")
    String switchover;

    @Option(names = "--downtime-limit", defaultValue = "300", description = "milliseconds (${DEFAULT-VALUE})")
    long downtimeLimit;

    @Option(names = "--no-wait", description = "return once the migration started")
    boolean noWait;

    @Override
    public Integer call() {
        if (targetDevices != null && targetDevices.size() != devices.size()) {
            System.err.println("give one --target-device per --device, or none");
            return 2;
        }
        try (AgentClient client = api.open()) {
            JsonArray pairs = new JsonArray();
            for (int i = 0; i < devices.size(); i++) {
                pairs.add(new JsonObject().put("device", devices.get(i))
                        .put("targetDevice", targetDevices == null ? devices.get(i) : targetDevices.get(i)));
            }
            JsonObject request = new JsonObject().put("devices", pairs).put("destination", destination)
                    .put("mode", mode).put("switchover", switchover).put("downtimeLimitMillis", downtimeLimit);
            HttpResponse<Buffer> created = client.post("/v1/migrations", request);
            if (created.statusCode() != 201) {
                System.err.println("migration refused (" + created.statusCode() + "): " + AgentClient.error(created));
                return 2;
            }
            String id = created.bodyAsJsonObject().getString("id");
            System.out.println("migration " + id + " started: " + String.join(",", devices) + " -> " + destination);
            if (noWait) {
                return 0;
            }
            JsonObject status = follow(client, id);
            System.out.println(status.encodePrettily());
            return "completed".equals(status.getString("outcome")) ? 0 : 1;
        } catch (RuntimeException e) {
            System.err.println(api.problem(e));
            return 2;
        }
    }

    /** Follows the migration's event feed with a progress bar to its end; returns its final status. */
    private static JsonObject follow(AgentClient client, String id) {
        ProgressBar bar = new ProgressBar(System.err);
        Promise<Void> ended = Promise.promise();
        boolean[] hinted = {false};
        client.webSocket("/v1/migrations/" + id + "/events", ws -> {
            ws.textMessageHandler(text -> {
                JsonObject e = new JsonObject(text).getJsonObject("event", new JsonObject());
                if (e.containsKey("dataBytes")) {
                    bar.update(e.getString("phase"), e.getLong("dataBytes", 0L), e.getLong("stateSize", 0L));
                }
                if (!hinted[0] && "READY_FOR_SWITCHOVER".equals(e.getString("phase"))) {
                    hinted[0] = true;
                    bar.finish();
                    System.out.println("ready to switch over; let it go on with: curl -X POST "
                            + client.url("/v1/migrations/" + id + "/switchover"));
                }
            });
            ws.closeHandler(v -> ended.tryComplete());
        });
        // The feed closes after the migration's last event.
        ended.future().await();
        bar.finish();
        return client.getJson("/v1/migrations/" + id);
    }
}
