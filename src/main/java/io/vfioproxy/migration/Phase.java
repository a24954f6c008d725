package io.vfioproxy.migration;

import java.util.EnumSet;
import java.util.Set;

/**
 * Where a migration is, on either side. The source walks CONNECTING, HANDSHAKE, SETUP, (PRECOPY,
 * READY_FOR_SWITCHOVER,) SWITCHOVER, STOP_COPY, LOADING, (STARTING,) COMPLETED; the destination HANDSHAKE, RESUMING,
 * LOADED, (STARTING,) COMPLETED. A migration that fails or is cancelled before its commit goes through ABORTING,
 * while its devices return to a safe state, to FAILED or CANCELLED.
 */
public enum Phase {
    /** Source: opening the connection to the destination agent. */
    CONNECTING,
    /** HELLO sent (source) or awaited (destination); the destination checks compatibility before anything stops. */
    HANDSHAKE,
    /** Source: the device sections open (DEV_SETUP_STATE). */
    SETUP,
    /** Source: the devices run in PRE_COPY while their state moves. */
    PRECOPY,
    /** Source: pre-copy converged; a manual switchover waits for its release while pre-copy goes on. */
    READY_FOR_SWITCHOVER,
    /** Source: the devices quiesce (RUNNING_P2P or PRE_COPY_P2P), all before any stops. */
    SWITCHOVER,
    /** Source: the devices are stopped and the rest of their state moves. */
    STOP_COPY,
    /** Destination: the devices are in RESUMING and take the state as it arrives. */
    RESUMING,
    /** Source: every byte is out; waiting for the destination's devices to accept their state (the commit point). */
    LOADING,
    /** Destination: every device accepted its state and waits in STOP for the source's START. */
    LOADED,
    /** The destination starts its devices, in P2P order. */
    STARTING,
    /** Failed or cancelled: the devices go back to a safe state (sources RUNNING, destinations reset). */
    ABORTING,
    COMPLETED,
    FAILED,
    CANCELLED;

    private static final Set<Phase> ENDS = EnumSet.of(COMPLETED, FAILED, CANCELLED);

    /** True for the phases a migration ends in. */
    public boolean isTerminal() {
        return ENDS.contains(this);
    }

    /** True once the migration is ending or has ended: nothing but its end may happen. */
    public boolean isEnding() {
        return this == ABORTING || isTerminal();
    }

    /** The phases that may follow this one. */
    Set<Phase> successors() {
        Set<Phase> next = switch (this) {
            case CONNECTING -> EnumSet.of(HANDSHAKE);
            case HANDSHAKE -> EnumSet.of(SETUP, RESUMING);
            case SETUP -> EnumSet.of(PRECOPY, SWITCHOVER);
            case PRECOPY -> EnumSet.of(READY_FOR_SWITCHOVER, SWITCHOVER);
            case READY_FOR_SWITCHOVER -> EnumSet.of(SWITCHOVER);
            case SWITCHOVER -> EnumSet.of(STOP_COPY);
            case STOP_COPY -> EnumSet.of(LOADING);
            case RESUMING -> EnumSet.of(LOADED);
            case LOADING, LOADED -> EnumSet.of(STARTING, COMPLETED);
            case STARTING -> EnumSet.of(COMPLETED);
            case ABORTING -> EnumSet.of(FAILED, CANCELLED);
            case COMPLETED, FAILED, CANCELLED -> EnumSet.noneOf(Phase.class);
        };
        if (this != ABORTING && !isTerminal()) {
            next.add(ABORTING);
        }
        return next;
    }

    /**
     * The phase after this one: {@code next}.
     *
     * @throws IllegalStateException where {@code next} cannot follow this phase (a bug in an engine)
     */
    Phase to(Phase next) {
        if (!successors().contains(next)) {
            throw new IllegalStateException("a migration in phase " + this + " cannot go to " + next);
        }
        return next;
    }
}
