package io.vfioproxy.migration;

import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceIdentity;

/** Whether a device can load a state saved from another: checked before anything is stopped or written. */
final class Compatibility {

    private Compatibility() {
    }

    /** Null when {@code target} can load the state of {@code source}, else the reason it cannot. */
    static String check(DeviceHandle target, String sourceName, DeviceIdentity source) {
        DeviceIdentity local = target.identity();
        if (local.acceptsStateOf(source)) {
            return null;
        }
        return "device " + target.name() + " cannot load the state of " + sourceName + ": source is "
                + source.model() + " (" + source.driver() + "), destination is " + local.model() + " ("
                + local.driver() + ")";
    }
}
