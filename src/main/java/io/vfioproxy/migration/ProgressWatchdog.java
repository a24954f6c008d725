package io.vfioproxy.migration;

import io.vertx.core.Vertx;
import java.util.function.LongConsumer;
import java.util.function.LongSupplier;

/**
 * Fails a migration whose connection has carried nothing, either way, for the progress timeout: a peer that stopped
 * reading, a device that stopped answering, a network that went silent. Both sides use one; pre-copy sends an
 * empty iteration every second (DeviceReadStream), so an idle device or a held switchover keeps bytes moving.
 *
 * <p>Runs on the migration's context.
 */
final class ProgressWatchdog {

    private final Vertx vertx;
    private final long timeoutMillis;
    private final LongSupplier mark;
    private final LongConsumer onStall;
    private long timer = -1;
    private long lastMark = -1;
    private long lastMoveNanos;

    /**
     * @param mark a count that grows while the migration makes progress (bytes written and read)
     * @param onStall called once with the milliseconds nothing moved, when they reach the timeout
     */
    ProgressWatchdog(Vertx vertx, long timeoutMillis, LongSupplier mark, LongConsumer onStall) {
        this.vertx = vertx;
        this.timeoutMillis = timeoutMillis;
        this.mark = mark;
        this.onStall = onStall;
    }

    void start() {
        lastMoveNanos = System.nanoTime();
        timer = vertx.setPeriodic(Math.max(10, Math.min(100, timeoutMillis / 4)), id -> check());
    }

    void stop() {
        if (timer >= 0) {
            vertx.cancelTimer(timer);
            timer = -1;
        }
    }

    private void check() {
        long now = System.nanoTime();
        long m = mark.getAsLong();
        if (m != lastMark) {
            lastMark = m;
            lastMoveNanos = now;
            return;
        }
        long idleMillis = (now - lastMoveNanos) / 1_000_000;
        if (idleMillis >= timeoutMillis) {
            stop();
            onStall.accept(idleMillis);
        }
    }
}
