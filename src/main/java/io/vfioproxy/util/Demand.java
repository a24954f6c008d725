package io.vfioproxy.util;

/**
 * A ReadStream's demand, as vert.x core counts it: {@code pause()} sets it to 0, {@code fetch(n)} adds n (saturating
 * at unbounded), {@code resume()} makes it unbounded, and each item delivered takes one unless it is unbounded.
 * Not thread-safe: it lives on the stream's context.
 */
public final class Demand {

    private long demand = Long.MAX_VALUE;

    public void pause() {
        demand = 0;
    }

    public void fetch(long amount) {
        demand = Long.MAX_VALUE - demand > amount ? demand + amount : Long.MAX_VALUE;
    }

    /** True while an item may be delivered. */
    public boolean wanted() {
        return demand > 0;
    }

    /** One item is delivered. */
    public void take() {
        if (demand != Long.MAX_VALUE) {
            demand--;
        }
    }
}
