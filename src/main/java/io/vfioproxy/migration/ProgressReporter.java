package io.vfioproxy.migration;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.migration.MigrationStatus.DeviceBytes;
import io.vfioproxy.migration.MigrationStatus.Outcome;
import io.vfioproxy.migration.MigrationStatus.Role;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * Ten times a second, for every active migration whose bytes or phase moved: publishes a progress event and feeds
 * the byte counters; when a migration ends, counts its outcome, duration and downtime. Cheap: a few fields per
 * active migration.
 */
final class ProgressReporter {

    static final long PERIOD_MILLIS = 100;

    /** What the last tick saw of one migration. */
    private record Seen(long bytes, long nanos, Phase phase, Map<String, DeviceBytes> deviceBytes) {
    }

    private final Vertx vertx;
    private final String agent;
    private final MigrationMetrics metrics;
    private final Consumer<JsonObject> sink;
    private final Map<MigrationRecord, Seen> tracked = new ConcurrentHashMap<>();
    private final long timer;

    /** Call on the context the ticks should run on. */
    ProgressReporter(Vertx vertx, String agent, MigrationMetrics metrics, Consumer<JsonObject> sink) {
        this.vertx = vertx;
        this.agent = agent;
        this.metrics = metrics;
        this.sink = sink;
        this.timer = vertx.setPeriodic(PERIOD_MILLIS, id -> tick());
    }

    /** Follows {@code record} until it ends. */
    void track(MigrationRecord record) {
        metrics.started(record.role());
        tracked.put(record, new Seen(0, System.nanoTime(), null, Map.of()));
    }

    void close() {
        vertx.cancelTimer(timer);
    }

    private void tick() {
        long now = System.nanoTime();
        tracked.forEach((record, before) -> {
            MigrationStatus s = record.status();
            countBytes(s, before.deviceBytes());
            if (s.outcome() != Outcome.ACTIVE) {
                metrics.ended(s.role(), s.outcome(), s.durationMillis(),
                        s.role() == Role.SOURCE ? s.downtimeMillis() : -1);
                tracked.remove(record);
                return;
            }
            long data = s.transfer().dataBytes();
            if (data != before.bytes() || s.phase() != before.phase()) {
                double seconds = (now - before.nanos()) / 1e9;
                long rate = seconds > 0 ? (long) ((data - before.bytes()) / seconds) : 0;
                long remaining = s.transfer().remainingBytes();
                JsonObject progress = new JsonObject().put("agent", agent).put("migration", s.id())
                        .put("role", s.role().name().toLowerCase()).put("phase", s.phase().name())
                        .put("dataBytes", data).put("stateSize", s.transfer().stateSize())
                        .put("remainingBytes", remaining).put("rateBytesPerSecond", rate);
                if (rate > 0 && remaining >= 0) {
                    progress.put("etaSeconds", remaining / (double) rate);
                }
                sink.accept(progress);
            }
            tracked.put(record, new Seen(data, now, s.phase(), s.transfer().perDevice()));
        });
    }

    private void countBytes(MigrationStatus s, Map<String, DeviceBytes> before) {
        s.transfer().perDevice().forEach((device, b) -> {
            DeviceBytes was = before.getOrDefault(device, new DeviceBytes(0, 0));
            if (s.role() == Role.SOURCE) {
                metrics.bytes(device, "precopy", "sent", b.precopy() - was.precopy());
                metrics.bytes(device, "stop-copy", "sent", b.stopCopy() - was.stopCopy());
            } else {
                metrics.bytes(device, "all", "received", b.total() - was.total());
            }
        });
    }
}
