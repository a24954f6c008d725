package io.vfioproxy.migration;

/** A migration failed; the message says why, and {@link #phase()} where. */
public final class MigrationException extends RuntimeException {

    private final String phase;
    private final boolean fromPeer;
    private boolean cancelled;

    public MigrationException(String phase, String message) {
        this(phase, message, null, false);
    }

    public MigrationException(String phase, String message, Throwable cause) {
        this(phase, message, cause, false);
    }

    private MigrationException(String phase, String message, Throwable cause, boolean fromPeer) {
        super(message, cause);
        this.phase = phase;
        this.fromPeer = fromPeer;
    }

    /** The peer ended the migration (REFUSE or ABORT): it needs no ABORT in reply. */
    public static MigrationException fromPeer(String phase, String message) {
        return new MigrationException(phase, message, null, true);
    }

    public boolean isFromPeer() {
        return fromPeer;
    }

    /** The operator cancelled the migration in {@code phase}. */
    public static MigrationException cancelled(String phase) {
        MigrationException e = new MigrationException(phase, "cancelled by the operator in phase " + phase);
        e.cancelled = true;
        return e;
    }

    public boolean isCancelled() {
        return cancelled;
    }

    public String phase() {
        return phase;
    }
}
