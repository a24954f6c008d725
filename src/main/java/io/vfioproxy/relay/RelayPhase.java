package io.vfioproxy.relay;

import java.util.EnumSet;
import java.util.Set;

/**
 * Where a relay is. A source relay listens for its hypervisor, relays once the first channel opened, and ends;
 * a destination relay begins relaying with its first channel.
 */
public enum RelayPhase {
    /** Source: the listen address is up; the hypervisor has not connected yet. */
    LISTENING,
    /** At least one channel carries bytes. */
    RELAYING,
    /** Every channel ended cleanly. */
    COMPLETED,
    /** A channel failed, so every channel was closed. */
    FAILED,
    /** Cancelled through the API: every channel was closed. */
    CANCELLED;

    public boolean isTerminal() {
        return this == COMPLETED || this == FAILED || this == CANCELLED;
    }

    Set<RelayPhase> successors() {
        return switch (this) {
            case LISTENING -> EnumSet.of(RELAYING, FAILED, CANCELLED);
            case RELAYING -> EnumSet.of(COMPLETED, FAILED, CANCELLED);
            case COMPLETED, FAILED, CANCELLED -> EnumSet.noneOf(RelayPhase.class);
        };
    }

    /**
     * The phase after this one.
     *
     * @throws IllegalStateException where {@code next} cannot follow (a bug in the relay)
     */
    RelayPhase to(RelayPhase next) {
        if (!successors().contains(next)) {
            throw new IllegalStateException("a relay in phase " + this + " cannot go to " + next);
        }
        return next;
    }
}
