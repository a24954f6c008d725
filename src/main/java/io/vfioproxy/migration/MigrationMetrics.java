package io.vfioproxy.migration;

import io.vfioproxy.migration.MigrationStatus.Role;

/** What the migration engines count; the agent's metrics implement it (Prometheus names in api.AgentMetrics). */
public interface MigrationMetrics {

    /** A migration began on this agent. */
    void started(Role role);

    /** A migration ended: its outcome, its duration and (source, or -1) its downtime. */
    void ended(Role role, MigrationStatus.Outcome outcome, double durationMillis, double downtimeMillis);

    /**
     * Device data bytes moved since the last call.
     *
     * @param phase "precopy" or "stop-copy" on the source, "all" on the destination
     * @param direction "sent" or "received"
     */
    void bytes(String device, String phase, String direction, long n);

    /** Counts nothing: for one-shot commands and tests. */
    MigrationMetrics NONE = new MigrationMetrics() {
        @Override
        public void started(Role role) {
        }

        @Override
        public void ended(Role role, MigrationStatus.Outcome outcome, double durationMillis, double downtimeMillis) {
        }

        @Override
        public void bytes(String device, String phase, String direction, long n) {
        }
    };
}
