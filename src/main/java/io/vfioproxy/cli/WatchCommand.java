package io.vfioproxy.cli;

import io.vertx.core.Promise;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.util.ByteSize;
import java.time.LocalTime;
import java.time.temporal.ChronoUnit;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Follows an agent's events live, or one migration's to its end. */
@Command(name = "watch", mixinStandardHelpOptions = true,
        description = "Follow an agent's events live (device state changes, migration lifecycle, progress, relays) "
                + "over its WebSocket feed. With --migration (or --relay), follow that migration (relay) to its end; "
                + "the exit code is 0 when it completed, 1 otherwise.")
public final class WatchCommand implements Callable<Integer> {

    @Mixin
    AgentClient api;

    @Option(names = "--migration", description = "follow one migration")
    String migration;

    @Option(names = "--relay", description = "follow one relay")
    String relay;

    /** One line per event. */
    static String line(JsonObject message) {
        JsonObject e = message.getJsonObject("event", new JsonObject());
        String time = LocalTime.now().truncatedTo(ChronoUnit.MILLIS).toString();
        return switch (message.getString("type", "")) {
            case "device-state" -> String.format("%s %s device %s: %s -> %s (%s)", time, e.getString("agent"),
                    e.getString("device"), e.getString("from"), e.getString("to"), e.getString("cause"));
            case "progress" -> String.format(Locale.ROOT, "%s %s migration %s %s: %s of %s, %.2f GB/s", time,
                    e.getString("agent"), e.getString("migration"), e.getString("phase"),
                    ByteSize.format(e.getLong("dataBytes", 0L)), ByteSize.format(e.getLong("stateSize", 0L)),
                    e.getLong("rateBytesPerSecond", 0L) / 1e9);
            case "relay" -> String.format(Locale.ROOT, "%s %s relay %s %s: %s, %s to the destination over %d "
                    + "channel(s)%s", time, e.getString("agent"), e.getString("relay"), e.getString("event"),
                    e.getString("phase"), ByteSize.format(e.getLong("toDestination", 0L)),
                    e.getJsonArray("channels", new io.vertx.core.json.JsonArray()).size(),
                    e.containsKey("error") ? " (" + e.getString("error") + ")" : "");
            default -> String.format("%s %s migration %s %s: %s%s", time, e.getString("agent"),
                    e.getString("migration"), e.getString("event"), e.getString("phase"),
                    e.containsKey("error") ? " (" + e.getString("error") + ")" : "");
        };
    }

    @Override
    public Integer call() {
        try (AgentClient client = api.open()) {
            String path = migration != null ? "/v1/migrations/" + migration + "/events"
                    : relay != null ? "/v1/relays/" + relay + "/events" : "/v1/events";
            Promise<String> end = Promise.promise();
            String[] outcome = {null};
            // Handlers are set before any message: the migration's status is the first one.
            client.webSocket(path, ws -> {
                ws.textMessageHandler(text -> {
                    JsonObject message = new JsonObject(text);
                    System.out.println(line(message));
                    JsonObject e = message.getJsonObject("event", new JsonObject());
                    if ("migration".equals(message.getString("type"))) {
                        outcome[0] = e.getString("outcome", outcome[0]);
                    } else if ("relay".equals(message.getString("type")) && e.containsKey("phase")) {
                        outcome[0] = e.getString("phase").toLowerCase(Locale.ROOT);
                    }
                });
                ws.closeHandler(v -> end.tryComplete(outcome[0]));
            });
            String last = end.future().await();
            return migration == null && relay == null || "completed".equals(last) ? 0 : 1;
        } catch (RuntimeException e) {
            System.err.println(api.problem(e));
            return 2;
        }
    }
}
