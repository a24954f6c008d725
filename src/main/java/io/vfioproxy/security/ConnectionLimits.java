package io.vfioproxy.security;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * How many connections an endpoint holds, in all and per peer address: a connection over either limit is closed
 * as it arrives, before it costs a TLS handshake or a buffer. The stream's is shared by the TCP endpoint's
 * instances and the WebSocket stream; the API has its own. Thread-safe.
 */
public final class ConnectionLimits {

    private final String section;
    private final int max;
    private final int maxPerPeer;
    private final AtomicInteger open = new AtomicInteger();
    private final ConcurrentMap<String, AtomicInteger> perPeer = new ConcurrentHashMap<>();

    /** @param section the configuration section the limits come from ("stream", "api"), for the refusals */
    public ConnectionLimits(String section, int max, int maxPerPeer) {
        this.section = section;
        this.max = max;
        this.maxPerPeer = maxPerPeer;
    }

    /** A held connection; {@link #release()} once it closed (twice is harmless). */
    public final class Permit {
        private final String peer;
        private boolean released;

        private Permit(String peer) {
            this.peer = peer;
        }

        public synchronized void release() {
            if (released) {
                return;
            }
            released = true;
            open.decrementAndGet();
            perPeer.computeIfPresent(peer, (k, n) -> n.decrementAndGet() == 0 ? null : n);
        }
    }

    /**
     * A permit for a new connection ({@code what}, for the log) from {@code peer} (its address, without the port),
     * or null, the refusal logged with the limit it would break, when it is over one: the caller closes it.
     */
    public Permit admit(String what, String peer, Refusals refusals) {
        if (open.incrementAndGet() > max) {
            open.decrementAndGet();
            refusals.refused(what, peer, "the endpoint holds " + max + " connections already (" + section
                    + ".maxConnections)");
            return null;
        }
        AtomicInteger mine = perPeer.computeIfAbsent(peer, k -> new AtomicInteger());
        if (mine.incrementAndGet() > maxPerPeer) {
            mine.decrementAndGet();
            open.decrementAndGet();
            refusals.refused(what, peer, peer + " holds " + maxPerPeer + " connections already (" + section
                    + ".maxConnectionsPerPeer)");
            return null;
        }
        return new Permit(peer);
    }

    /** Connections held now. */
    public int open() {
        return open.get();
    }
}
