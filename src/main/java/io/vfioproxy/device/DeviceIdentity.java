package io.vfioproxy.device;

import io.vertx.core.json.JsonObject;

/**
 * What a destination checks before it accepts a device's state: where it comes from and what kind it is.
 *
 * @param backend "simulated" or "native"
 * @param model the kind of device, for example "sim-4096x262144" or a PCI "8086:1520"
 * @param driver the bound driver, for example "vfio-pci", "mtty" or "simulated"
 * @param stateSize the device's estimate of its stop-copy stream size in bytes (MIG_DATA_SIZE)
 */
public record DeviceIdentity(String backend, String model, String driver, long stateSize) {

    public JsonObject toJson() {
        return new JsonObject().put("backend", backend).put("model", model).put("driver", driver)
                .put("stateSize", stateSize);
    }

    public static DeviceIdentity fromJson(JsonObject json) {
        return new DeviceIdentity(json.getString("backend", ""), json.getString("model", ""),
                json.getString("driver", ""), json.getLong("stateSize", 0L));
    }

    /** True when a stream saved from {@code other} can be loaded into a device of this identity. */
    public boolean acceptsStateOf(DeviceIdentity other) {
        return model.equals(other.model) && driver.equals(other.driver);
    }
}
