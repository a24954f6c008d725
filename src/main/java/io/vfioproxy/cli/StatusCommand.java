package io.vfioproxy.cli;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.util.ByteSize;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/** Shows an agent's devices and migrations. */
@Command(name = "status", mixinStandardHelpOptions = true,
        description = "Show an agent's devices (state, flags, migration holding them), its migrations and its relays.")
public final class StatusCommand implements Callable<Integer> {

    @Mixin
    AgentClient api;

    @Override
    public Integer call() {
        try (AgentClient client = api.open()) {
            JsonObject devices = client.getJson("/v1/devices");
            JsonArray migrations = client.getJson("/v1/migrations").getJsonArray("migrations");
            System.out.println("agent " + devices.getString("agent"));
            System.out.printf("%-16s %-12s %-24s %-22s %s%n", "DEVICE", "STATE", "FLAGS", "MODEL", "MIGRATION");
            for (Object o : devices.getJsonArray("devices")) {
                JsonObject d = (JsonObject) o;
                System.out.printf("%-16s %-12s %-24s %-22s %s%n", d.getString("name"), d.getString("state"),
                        d.getString("flags"), d.getJsonObject("identity").getString("model"),
                        d.getString("migration") == null ? "-" : d.getString("migration"));
            }
            System.out.printf("%n%-40s %-12s %-10s %-22s %-12s %s%n", "MIGRATION", "ROLE", "OUTCOME", "PHASE", "BYTES",
                    "DOWNTIME");
            for (Object o : migrations) {
                JsonObject m = (JsonObject) o;
                System.out.printf("%-40s %-12s %-10s %-22s %-12s %s%n", m.getString("id"), m.getString("role"),
                        m.getString("outcome"), m.getString("phase"), ByteSize.format(m.getLong("dataBytes", 0L)),
                        m.containsKey("downtimeMillis") ? Math.round(m.getDouble("downtimeMillis")) + " ms" : "-");
            }
            JsonArray relays = client.getJson("/v1/relays").getJsonArray("relays");
            System.out.printf("%n%-40s %-12s %-10s %-9s %-12s %s%n", "RELAY", "ROLE", "PHASE", "CHANNELS", "BYTES",
                    "LISTEN / TARGET");
            for (Object o : relays) {
                JsonObject r = (JsonObject) o;
                System.out.printf("%-40s %-12s %-10s %-9d %-12s %s%n", r.getString("id"), r.getString("role"),
                        r.getString("phase"), r.getJsonArray("channels").size(),
                        ByteSize.format(r.getLong("toDestination", 0L)),
                        (r.getString("listen") == null ? "" : r.getString("listen") + " -> ") + r.getString("target"));
            }
            return 0;
        } catch (RuntimeException e) {
            System.err.println(api.problem(e));
            return 2;
        }
    }
}
