package io.vfioproxy.migration;

import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.uapi.MigrationFlags;

/** Whether a device can load a state saved from another: checked before anything is stopped or written. */
final class Compatibility {

    private Compatibility() {
    }

    /**
     * Null when {@code target} can load the state of {@code source}, else the reason it cannot: the kind of
     * device and the driver must be the same, the operator's compatibility tags equal, and the destination must
     * support every migration flag the source uses (without P2P it could not be quiesced with its peers).
     */
    static String check(DeviceHandle target, String sourceName, DeviceIdentity source) {
        DeviceIdentity local = target.identity();
        String prefix = "device " + target.name() + " cannot load the state of " + sourceName + ": ";
        if (!local.model().equals(source.model()) || !local.driver().equals(source.driver())) {
            return prefix + "source is " + source.model() + " (" + source.driver() + "), destination is "
                    + local.model() + " (" + local.driver() + ")";
        }
        if (!local.compatibilityTag().equals(source.compatibilityTag())) {
            return prefix + "compatibility tags differ: source '" + source.compatibilityTag() + "', destination '"
                    + local.compatibilityTag() + "'";
        }
        if (!source.flags().isEmpty()) {
            long wanted = MigrationFlags.parse(source.flags()).bits();
            if ((target.flags().bits() & wanted) != wanted) {
                return prefix + "the source migrates with " + source.flags() + ", the destination supports only "
                        + target.flags();
            }
        }
        return null;
    }
}
