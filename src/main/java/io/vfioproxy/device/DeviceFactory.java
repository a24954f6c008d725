package io.vfioproxy.device;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.uapi.MigrationFlags;
import io.vfioproxy.util.ByteSize;

/** Opens a device backend from its configuration entry (the "devices" array of conf/agent.json). */
public final class DeviceFactory {

    private DeviceFactory() {
    }

    /**
     * Opens the device {@code config} describes. Blocking: call it on the device's worker thread.
     *
     * <p>Simulated: {@code {"name": "sim0", "backend": "simulated", "size": "1GiB", "pageSize": 4096,
     * "flags": "STOP_COPY,P2P,PRE_COPY", "seed": 1, "faults": {...}, "drainedPrecopyRead": "ENOMSG"}}.
     */
    public static MigrationDevice open(JsonObject config) {
        String name = config.getString("name");
        if (name == null || name.isBlank()) {
            throw new IllegalArgumentException("a device entry needs a name: " + config.encode());
        }
        String backend = config.getString("backend", "simulated");
        if (!backend.equals("simulated")) {
            throw new IllegalArgumentException("device " + name + ": unknown backend '" + backend
                    + "'; this build supports 'simulated'");
        }
        long size = ByteSize.parse(config.getValue("size", "64MiB").toString());
        int pageSize = config.getInteger("pageSize", 4096);
        MigrationFlags flags = MigrationFlags.parse(config.getString("flags", "STOP_COPY,P2P,PRE_COPY"));
        long seed = config.getLong("seed", (long) name.hashCode());
        String drained = config.getString("drainedPrecopyRead", "ENOMSG");
        if (!drained.equals("ENOMSG") && !drained.equals("ZERO")) {
            throw new IllegalArgumentException("device " + name + ": drainedPrecopyRead must be ENOMSG or ZERO");
        }
        return new SimulatedDevice(name, size, pageSize, flags, seed, FaultPlan.fromJson(config.getJsonObject("faults")),
                drained.equals("ZERO"));
    }
}
