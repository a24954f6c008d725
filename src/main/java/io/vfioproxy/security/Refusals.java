package io.vfioproxy.security;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Logs each refused peer once per reason: a flood of refused connections (a port scan, a misconfigured peer
 * retrying) makes one line per peer and reason, not one per connection. Remembers the last 1000.
 */
public final class Refusals {

    private static final System.Logger LOG = System.getLogger("io.vfioproxy.security");
    private static final int REMEMBERED = 1000;

    private final String agent;
    private final Map<String, Boolean> logged = new LinkedHashMap<>(16, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Boolean> eldest) {
            return size() > REMEMBERED;
        }
    };

    public Refusals(String agent) {
        this.agent = agent;
    }

    /** Logs a problem with the agent's own credentials (not a peer's). */
    public void problem(String message) {
        LOG.log(System.Logger.Level.WARNING, "agent " + agent + ": security: " + message);
    }

    /** Logs that {@code what} from {@code peer} was refused because {@code why}, unless it already was. */
    public void refused(String what, String peer, String why) {
        String key = peer + " " + why;
        synchronized (logged) {
            if (logged.put(key, Boolean.TRUE) != null) {
                return;
            }
        }
        LOG.log(System.Logger.Level.WARNING, "agent " + agent + ": refused " + what + " from " + peer + ": " + why);
    }
}
