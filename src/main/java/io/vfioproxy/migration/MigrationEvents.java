package io.vfioproxy.migration;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.util.Enums;
import java.util.function.Consumer;

/**
 * Migration lifecycle events: built from the status at the moment, handed to the agent's sink (the event bus), and
 * logged where an operator reads them.
 */
public final class MigrationEvents {

    /** The lifecycle events, by the name they carry in the event's {@code event} field. */
    public enum Lifecycle {
        STARTED("started"),
        PHASE("phase"),
        READY_FOR_SWITCHOVER("ready-for-switchover"),
        COMMITTED("committed"),
        COMPLETED("completed"),
        FAILED("failed"),
        CANCELLED("cancelled");

        private final String wireName;

        Lifecycle(String wireName) {
            this.wireName = wireName;
        }

        public String wireName() {
            return wireName;
        }

        /** True for the events a migration ends with. */
        public boolean isEnd() {
            return this == COMPLETED || this == FAILED || this == CANCELLED;
        }

        /** The event with this name, or null. */
        public static Lifecycle of(String wireName) {
            return Enums.find(values(), e -> e.wireName.equals(wireName));
        }
    }

    private static final System.Logger LOG = System.getLogger("io.vfioproxy.migration");

    private final String agent;
    private final Consumer<JsonObject> sink;

    /** @param sink where each event goes (the agent publishes it on the event bus) */
    public MigrationEvents(String agent, Consumer<JsonObject> sink) {
        this.agent = agent;
        this.sink = sink;
    }

    /** Publishes {@code event} with {@code status}, and {@code extra} fields. */
    void publish(MigrationStatus status, Lifecycle event, JsonObject extra) {
        JsonObject body = status.toJson().put("agent", agent).put("event", event.wireName())
                .put("migration", status.id());
        body.mergeIn(extra);
        sink.accept(body);
        log(status, event);
    }

    void publish(MigrationStatus status, Lifecycle event) {
        publish(status, event, new JsonObject());
    }

    private void log(MigrationStatus s, Lifecycle event) {
        String who = "agent " + agent + ": migration " + s.id() + " (" + s.role().name().toLowerCase() + ", "
                + String.join(",", s.peers().devices()) + " -> " + s.peers().peer() + ")";
        MigrationStatus.Ending end = s.ending();
        switch (event) {
            case STARTED -> LOG.log(System.Logger.Level.INFO, who + " started");
            case READY_FOR_SWITCHOVER -> LOG.log(System.Logger.Level.INFO, who + " is ready to switch over and waits");
            case COMPLETED -> LOG.log(System.Logger.Level.INFO, who + " completed: " + s.transfer().dataBytes()
                    + " bytes" + (s.downtimeMillis() >= 0 ? ", downtime " + Math.round(s.downtimeMillis()) + " ms" : "")
                    + (end != null && end.warning() != null ? "; " + end.warning() : ""));
            case FAILED, CANCELLED -> LOG.log(System.Logger.Level.WARNING, who + " " + event.wireName() + " in phase "
                    + end.failedPhase() + ": " + end.error() + "; devices left " + end.deviceState());
            default -> LOG.log(System.Logger.Level.DEBUG, who + " " + event.wireName() + " " + s.phase());
        }
    }
}
