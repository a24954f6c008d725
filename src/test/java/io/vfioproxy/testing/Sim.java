package io.vfioproxy.testing;

import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.sim.SimulatedDevice;

/** The simulated device behind a handle, reached on the device's own thread as the agent reaches it. */
public final class Sim {

    private Sim() {
    }

    public static SimulatedDevice device(DeviceHandle handle) {
        return handle.submit(c -> (SimulatedDevice) c.device()).await();
    }

    /** The digest of the device's whole state: equal digests, equal states. */
    public static long digest(DeviceHandle handle) {
        return handle.submit(c -> ((SimulatedDevice) c.device()).stateDigest()).await();
    }
}
