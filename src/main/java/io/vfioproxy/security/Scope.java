package io.vfioproxy.security;

/** What a bearer token lets its holder do through the API, the feeds and the event-bus bridge. */
public enum Scope {
    /** Devices, migrations, relays, events and metrics: looking. */
    READ,
    /** Starting, cancelling and switching over migrations, relays, releasing devices; and everything READ allows. */
    CONTROL;

    /** Whether a holder of this scope may do what {@code needed} allows. */
    public boolean allows(Scope needed) {
        return this == CONTROL || needed == READ;
    }

    public String wireName() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
