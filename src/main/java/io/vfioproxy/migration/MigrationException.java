package io.vfioproxy.migration;

/** A migration failed; the message says why, and {@link #phase()} where. */
public final class MigrationException extends RuntimeException {

    private final String phase;
    private final boolean fromPeer;

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

    public String phase() {
        return phase;
    }
}
