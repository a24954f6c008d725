package io.vfioproxy.migration;

/** A migration failed; the message says why, and {@link #phase()} where. */
public final class MigrationException extends RuntimeException {

    private final Phase phase;
    private final boolean fromPeer;
    private final boolean cancelled;

    public MigrationException(Phase phase, String message) {
        this(phase, message, null, false, false);
    }

    public MigrationException(Phase phase, String message, Throwable cause) {
        this(phase, message, cause, false, false);
    }

    private MigrationException(Phase phase, String message, Throwable cause, boolean fromPeer, boolean cancelled) {
        super(message, cause);
        this.phase = phase;
        this.fromPeer = fromPeer;
        this.cancelled = cancelled;
    }

    /** The peer ended the migration (REFUSE or ABORT): it needs no ABORT in reply. */
    public static MigrationException fromPeer(Phase phase, String message) {
        return new MigrationException(phase, message, null, true, false);
    }

    public boolean isFromPeer() {
        return fromPeer;
    }

    /** The operator cancelled the migration in {@code phase}. */
    public static MigrationException cancelled(Phase phase) {
        return new MigrationException(phase, "cancelled by the operator in phase " + phase, null, false, true);
    }

    public boolean isCancelled() {
        return cancelled;
    }

    /** Where it failed. */
    public Phase phase() {
        return phase;
    }
}
