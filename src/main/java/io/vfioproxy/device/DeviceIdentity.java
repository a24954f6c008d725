package io.vfioproxy.device;

import io.vertx.core.json.JsonObject;

/**
 * What a destination checks before it accepts a device's state, before anything is stopped.
 *
 * @param backend "simulated" or "native"
 * @param model the kind of device: "pci:15b3:101e subsystem 15b3:0020", "mdev:mtty-2", "sim-4096x262144"
 * @param driver the bound driver: "vfio-pci", "mlx5_vfio_pci", "mtty", "simulated"
 * @param stateSize the device's estimate of its stop-copy stream size in bytes (MIG_DATA_SIZE), or -1 where the device
 *        cannot tell (kernels before 6.2, a driver whose query fails)
 * @param flags the device's migration flags ("STOP_COPY,P2P,PRE_COPY"), or "" where not known yet
 * @param compatibilityTag an operator-supplied tag (firmware or driver version, say) that must match, or ""
 */
public record DeviceIdentity(String backend, String model, String driver, long stateSize, String flags,
        String compatibilityTag) {

    public DeviceIdentity(String backend, String model, String driver, long stateSize) {
        this(backend, model, driver, stateSize, "", "");
    }

    /** This identity with the stop-copy size as the device reports it now. */
    public DeviceIdentity withStateSize(long bytes) {
        return new DeviceIdentity(backend, model, driver, bytes, flags, compatibilityTag);
    }

    /** This identity with the device's migration flags and the operator's compatibility tag. */
    public DeviceIdentity with(String migrationFlags, String tag) {
        return new DeviceIdentity(backend, model, driver, stateSize, migrationFlags, tag == null ? "" : tag);
    }

    public JsonObject toJson() {
        return new JsonObject().put("backend", backend).put("model", model).put("driver", driver)
                .put("stateSize", stateSize).put("flags", flags).put("compatibilityTag", compatibilityTag);
    }

    public static DeviceIdentity fromJson(JsonObject json) {
        return new DeviceIdentity(json.getString("backend", ""), json.getString("model", ""),
                json.getString("driver", ""), json.getLong("stateSize", 0L), json.getString("flags", ""),
                json.getString("compatibilityTag", ""));
    }
}
