package io.vfioproxy.relay;

import io.vertx.core.json.JsonObject;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.UnaryOperator;

/** One relay: its latest {@link RelayStatus} behind one reference; any thread reads a consistent snapshot. */
public final class RelayRecord {

    private final String id;
    private final AtomicReference<RelayStatus> status;

    RelayRecord(RelayStatus initial) {
        this.id = initial.id();
        this.status = new AtomicReference<>(initial);
    }

    public String id() {
        return id;
    }

    public RelayStatus status() {
        return status.get();
    }

    RelayStatus update(UnaryOperator<RelayStatus> change) {
        return status.updateAndGet(change);
    }

    public JsonObject toJson() {
        return status().toJson();
    }
}
