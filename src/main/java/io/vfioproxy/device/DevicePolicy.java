package io.vfioproxy.device;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.uapi.DeviceState;

/**
 * What a destination does with a device once it loaded a state into it, from the device's kind and its
 * configuration entry ({@code "afterMigration": "run" | "stop"}, {@code "handback": "/run/vmm/gpu0.sock"}).
 *
 * @param kind a PCI function or a mediated device
 * @param endState RUNNING (mdevs, by default) or STOP (PCI functions, by default: only the consumer that sets up
 *        their DMA and interrupts can run them)
 * @param handback the unix socket of the consumer that takes the device back after loading (the VMM or its device
 *        plugin listens there), or null to hold it until an explicit release
 */
public record DevicePolicy(DeviceKind kind, DeviceState endState, String handback) {

    /**
     * The policy {@code config} gives a device the backend found to be of {@code found} kind. The entry's
     * {@code "kind"} ("pci" | "mdev") wins where given: an fd handed over has no sysfs to tell.
     */
    public static DevicePolicy of(DeviceKind found, JsonObject config) {
        DeviceKind kind = config.containsKey("kind") ? DeviceKind.parse(config.getString("kind")) : found;
        String after = config.getString("afterMigration");
        DeviceState end = after == null ? kind.defaultEndState() : switch (after) {
            case "run" -> DeviceState.RUNNING;
            case "stop" -> DeviceState.STOP;
            default -> throw new IllegalArgumentException("device " + config.getString("name")
                    + ": afterMigration must be 'run' or 'stop', not '" + after + "'");
        };
        return new DevicePolicy(kind, end, config.getString("handback"));
    }

    /** What the agent will do with the device after a migration into it, in words for `devices` and the API. */
    public String describe() {
        if (endState == DeviceState.RUNNING) {
            return "runs it";
        }
        return handback != null ? "holds it in STOP and hands it to " + handback
                : "holds it in STOP, open, until it is released to its consumer";
    }

    public JsonObject toJson() {
        JsonObject json = new JsonObject().put("kind", kind.wireName()).put("afterMigration", endState.name())
                .put("destination", describe());
        if (handback != null) {
            json.put("handback", handback);
        }
        return json;
    }
}
