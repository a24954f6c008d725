package io.vfioproxy.migration;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.migration.MigrationStatus.Role;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.UnaryOperator;

/**
 * One migration as this agent sees it: the latest {@link MigrationStatus}, published through one reference. The
 * engine running the migration is the only writer, on its own context; any thread reads a consistent snapshot.
 */
public final class MigrationRecord {

    private final String id;
    private final Role role;
    private final long sequence;
    private final AtomicReference<MigrationStatus> status;

    MigrationRecord(MigrationStatus initial, long sequence) {
        this.id = initial.id();
        this.role = initial.role();
        this.sequence = sequence;
        this.status = new AtomicReference<>(initial);
    }

    public String id() {
        return id;
    }

    public Role role() {
        return role;
    }

    /** The order in which this agent registered its migrations. */
    long sequence() {
        return sequence;
    }

    /** The status now. */
    public MigrationStatus status() {
        return status.get();
    }

    /** Replaces the status with {@code change} applied to it; returns the new one. */
    MigrationStatus update(UnaryOperator<MigrationStatus> change) {
        return status.updateAndGet(change);
    }

    /** The status now, as the API shows it. */
    public JsonObject toJson() {
        return status().toJson();
    }
}
