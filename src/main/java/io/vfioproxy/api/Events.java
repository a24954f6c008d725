package io.vfioproxy.api;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.uapi.DeviceState;
import java.time.Instant;

/**
 * Event-bus addresses and event shapes the agent publishes (docs/EVENTS.md). Status events go to shared
 * addresses and name the agent in their body, so one subscriber on a clustered bus sees every node.
 */
public final class Events {

    /** Every device state change: {@code {agent, device, from, to, timestamp, cause, arcMicros}}. */
    public static final String DEVICE_STATE = "vmp.device.state";
    /** Migration lifecycle: {@code {agent, migration, role, event, phase, ...}}. */
    public static final String MIGRATION = "vmp.migration";
    /**
     * Progress of each active migration, ten times a second while bytes move: {@code {agent, migration, role, phase,
     * dataBytes, stateSize, remainingBytes, rateBytesPerSecond, etaSeconds}}.
     */
    public static final String PROGRESS = "vmp.migration.progress";

    /**
     * Relays: {@code {agent, relay, role, event, phase, toDestination, toSource, channels, qemu, ...}}; {@code event}
     * is started, phase, progress (twice a second while bytes move), completed, failed or cancelled.
     */
    public static final String RELAY = "vmp.relay";

    /**
     * Cluster membership as each agent sees it: {@code {agent, event, member, interrupted, timestamp}}; {@code event}
     * is joined or left; a left names the migrations of this agent with the member that it interrupted.
     */
    public static final String CLUSTER = "vmp.cluster";

    /** The request/reply command addresses of one agent: {@code vmp.agent.<name>.<command>}. */
    public static String command(String agent, String command) {
        return "vmp.agent." + agent + "." + command;
    }

    private Events() {
    }

    public static JsonObject deviceState(String agent, String device, DeviceState from, DeviceState to,
            String cause, long arcNanos) {
        return new JsonObject()
                .put("agent", agent)
                .put("device", device)
                .put("from", from.name())
                .put("to", to.name())
                .put("timestamp", Instant.now().toString())
                .put("cause", cause)
                .put("arcMicros", arcNanos / 1000);
    }
}
