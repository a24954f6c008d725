package io.vfioproxy.relay;

/** What relays count; the agent's metrics implement it (Prometheus names in api.AgentMetrics). */
public interface RelayMetrics {

    /** A relay began on this agent, as "source" or "destination". */
    void relayStarted(String role);

    /**
     * A relay ended.
     *
     * @param outcome "completed", "failed" or "cancelled"
     * @param wireDowntimeNanos from the first SECTION_END to EOF as the source saw them, or -1
     */
    void relayEnded(String role, String outcome, long durationNanos, long wireDowntimeNanos);

    /**
     * Bytes relayed since the last call.
     *
     * @param direction "to-destination" or "to-source"
     * @param channel "main", "multifd" or "unknown"
     */
    void relayBytes(String direction, String channel, long n);

    /** Main-channel bytes of one kind of section ("ram", "vfio", "device", "other") since the last call. */
    void relaySectionBytes(String kind, long n);

    /** RAM pages ("normal" or "zero") since the last call. */
    void relayPages(String kind, long n);

    /** Counts nothing: for tests. */
    RelayMetrics NONE = new RelayMetrics() {
        @Override
        public void relayStarted(String role) {
        }

        @Override
        public void relayEnded(String role, String outcome, long durationNanos, long wireDowntimeNanos) {
        }

        @Override
        public void relayBytes(String direction, String channel, long n) {
        }

        @Override
        public void relaySectionBytes(String kind, long n) {
        }

        @Override
        public void relayPages(String kind, long n) {
        }
    };
}
