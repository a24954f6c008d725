package io.vfioproxy.testing;

import io.vertx.core.Vertx;
import io.vertx.core.eventbus.MessageConsumer;
import io.vertx.core.json.JsonObject;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/** Collects what an event-bus address carries, from the moment the consumer is registered. */
public final class EventLog {

    private EventLog() {
    }

    /** Every message published to {@code address} from now on. */
    public static List<JsonObject> record(Vertx vertx, String address) {
        List<JsonObject> events = new CopyOnWriteArrayList<>();
        MessageConsumer<JsonObject> consumer = vertx.eventBus().consumer(address, m -> events.add(m.body()));
        consumer.completion().await();
        return events;
    }
}
