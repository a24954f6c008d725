package io.vfioproxy.cli;

import io.vertx.core.Promise;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vfioproxy.util.ByteSize;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Starts a relay on a source agent, prints where the hypervisor migrates to, and follows the relay to its end. */
@Command(name = "relay", mixinStandardHelpOptions = true,
        description = "Relay a hypervisor's own migration stream: the source agent listens where the source QEMU "
                + "migrates to (print the address, give it to QEMU as 'migrate unix:/path'), carries every channel "
                + "to the destination agent, which connects it to the target (the destination QEMU's incoming "
                + "address, allowed by its relay.allowedTargets). Follows the relay to its end. Exit code 0 when "
                + "it completed, 1 when it failed or was cancelled, 2 when it was refused.")
public final class RelayCommand implements Callable<Integer> {

    @Mixin
    AgentClient api;

    @Option(names = {"--to", "--destination"}, required = true,
            description = "the destination agent: host:port (its stream endpoint, 7070) or ws://host:8080")
    String destination;

    @Option(names = "--target", required = true,
            description = "where the destination agent connects: unix:/path or tcp:host:port")
    String target;

    @Option(names = "--listen", description = "where to listen for the source QEMU: unix:/path or "
            + "tcp:127.0.0.1:PORT (default: a unix socket the agent picks)")
    String listen;

    @Option(names = "--channels", description = "connections QEMU opens: 1, or 1 + multifd-channels")
    Integer channels;

    @Option(names = "--no-wait", description = "return once the relay listens")
    boolean noWait;

    @Override
    public Integer call() {
        try (AgentClient client = api.open()) {
            JsonObject request = new JsonObject().put("destination", destination).put("target", target);
            if (listen != null) {
                request.put("listen", listen);
            }
            if (channels != null) {
                request.put("channels", channels);
            }
            HttpResponse<Buffer> created = client.post("/v1/relays", request);
            if (created.statusCode() != 201) {
                System.err.println("relay refused (" + created.statusCode() + "): " + AgentClient.error(created));
                return 2;
            }
            JsonObject relay = created.bodyAsJsonObject();
            String id = relay.getString("id");
            System.out.println("relay " + id + " listens on " + relay.getString("listen") + ": migrate the source "
                    + "QEMU there (QMP: {\"execute\": \"migrate\", \"arguments\": {\"uri\": \""
                    + relay.getString("listen") + "\"}})");
            if (noWait) {
                return 0;
            }
            JsonObject status = follow(client, id);
            System.out.println(summary(status));
            return "COMPLETED".equals(status.getString("phase")) ? 0 : 1;
        } catch (RuntimeException e) {
            System.err.println(api.problem(e));
            return 2;
        }
    }

    /** Follows the relay's feed, a line redrawn with the bytes moved and the rate, to its end. */
    private static JsonObject follow(AgentClient client, String id) {
        Promise<Void> ended = Promise.promise();
        long start = System.nanoTime();
        client.webSocket("/v1/relays/" + id + "/events", ws -> {
            ws.textMessageHandler(text -> {
                JsonObject e = new JsonObject(text).getJsonObject("event", new JsonObject());
                double seconds = (System.nanoTime() - start) / 1e9;
                long bytes = e.getLong("toDestination", 0L);
                System.err.printf(Locale.ROOT, "\r%-10s %d channel(s)  %s to the destination, %s back  %.2f GB/s   ",
                        e.getString("phase"), e.getJsonArray("channels", new io.vertx.core.json.JsonArray()).size(),
                        ByteSize.format(bytes), ByteSize.format(e.getLong("toSource", 0L)),
                        seconds > 0 ? bytes / seconds / 1e9 : 0.0);
            });
            ws.closeHandler(v -> ended.tryComplete());
        });
        ended.future().await();
        System.err.println();
        return client.getJson("/v1/relays/" + id);
    }

    /** What the relay moved and saw, in a few lines. */
    static String summary(JsonObject r) {
        StringBuilder out = new StringBuilder(String.format(Locale.ROOT, "relay %s %s: %s to the destination over "
                + "%d channel(s) in %.2f s", r.getString("id"), r.getString("phase").toLowerCase(Locale.ROOT),
                ByteSize.format(r.getLong("toDestination", 0L)), r.getJsonArray("channels").size(),
                r.getDouble("seconds", 0.0)));
        if (r.getString("error") != null) {
            out.append("\n  error: ").append(r.getString("error"));
        }
        JsonObject qemu = r.getJsonObject("qemu");
        if (qemu != null) {
            JsonObject ram = qemu.getJsonObject("ram");
            out.append(String.format(Locale.ROOT, "%n  QEMU stream: RAM %d pages, %d zero pages, %d pass(es); ",
                    ram.getLong("normalPages"), ram.getLong("zeroPages"), ram.getLong("passes")));
            qemu.getJsonObject("bytesByKind").forEach(k -> out.append(k.getKey()).append(' ')
                    .append(ByteSize.format(((Number) k.getValue()).longValue())).append("  "));
            if (qemu.containsKey("wireDowntimeMillis")) {
                out.append(String.format(Locale.ROOT, "%n  downtime on the wire (first SECTION_END to EOF): %.1f ms",
                        qemu.getDouble("wireDowntimeMillis")));
            }
            if (qemu.getString("note") != null) {
                out.append("\n  note: ").append(qemu.getString("note"));
            }
        }
        return out.toString();
    }
}
