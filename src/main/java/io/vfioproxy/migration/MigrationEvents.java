package io.vfioproxy.migration;

import io.vertx.core.eventbus.EventBus;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.api.Events;

/** Publishes migration lifecycle events on {@link Events#MIGRATION}, and logs the ones an operator reads. */
public final class MigrationEvents {

    private static final System.Logger LOG = System.getLogger("io.vfioproxy.migration");

    private final EventBus bus;
    private final String agent;

    public MigrationEvents(EventBus bus, String agent) {
        this.bus = bus;
        this.agent = agent;
    }

    /** Publishes {@code event} ("started", "phase", "committed", "completed", "failed") with the record's status. */
    public void publish(MigrationRecord record, String event, JsonObject extra) {
        JsonObject body = record.toJson().put("agent", agent).put("event", event).put("migration", record.id());
        body.mergeIn(extra);
        bus.publish(Events.MIGRATION, body);
        log(record, event, body);
    }

    private void log(MigrationRecord r, String event, JsonObject body) {
        String who = "agent " + agent + ": migration " + r.id() + " (" + r.role().name().toLowerCase() + ", "
                + body.getString("device") + " -> " + body.getString("peer") + ")";
        switch (event) {
            case "started" -> LOG.log(System.Logger.Level.INFO, who + " started");
            case "ready-for-switchover" -> LOG.log(System.Logger.Level.INFO, who + " is ready to switch over and waits");
            case "completed" -> LOG.log(System.Logger.Level.INFO, who + " completed: " + r.dataBytes() + " bytes"
                    + (r.downtimeMillis() >= 0 ? ", downtime " + Math.round(r.downtimeMillis()) + " ms" : "")
                    + (body.containsKey("warning") ? "; " + body.getString("warning") : ""));
            case "failed", "cancelled" -> LOG.log(System.Logger.Level.WARNING, who + " " + event + " in phase "
                    + body.getString("failedPhase") + ": " + body.getString("error") + "; devices left "
                    + body.getString("deviceState"));
            default -> LOG.log(System.Logger.Level.DEBUG, who + " " + event + " " + r.phase());
        }
    }
}
