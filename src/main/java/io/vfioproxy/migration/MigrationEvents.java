package io.vfioproxy.migration;

import io.vertx.core.eventbus.EventBus;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.api.Events;

/** Publishes migration lifecycle events on {@link Events#MIGRATION}. */
public final class MigrationEvents {

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
    }
}
