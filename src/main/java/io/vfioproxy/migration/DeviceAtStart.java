package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;

/**
 * A source device as its migration finds it, read from the device when the migration starts (as QEMU's save_setup
 * does), not when the agent opened it: its state, which decides whether it can pre-copy and where a rollback returns
 * it, and its stop-copy size (MIG_DATA_SIZE), which sizes the reads and the estimates.
 *
 * @param state RUNNING or STOP, the only states a source migrates from (QEMU refuses others too)
 * @param dataSize MIG_DATA_SIZE now, or -1 where the device cannot tell
 * @param dataSizeError the errno of a failed MIG_DATA_SIZE, or null
 */
record DeviceAtStart(DeviceHandle device, DeviceState state, long dataSize, String dataSizeError) {

    /**
     * What stop-copy is taken to send when the device cannot tell: QEMU's VFIO_MIG_STOP_COPY_SIZE, large enough that
     * the downtime limit is never broken on a guess.
     */
    static final long UNKNOWN_DATA_SIZE = 100L << 30;

    /** Reads the device's state and MIG_DATA_SIZE on its own thread. */
    static Future<DeviceAtStart> read(DeviceHandle device, String cause) {
        return device.submit(c -> {
            DeviceState state = c.refreshState(cause);
            try {
                return new DeviceAtStart(device, state, c.device().stopCopySize(), null);
            } catch (VfioException e) {
                return new DeviceAtStart(device, state, -1, Errno.nameOf(e.errno()));
            }
        });
    }

    /** Why this device cannot be a source now, or null. */
    String refusal() {
        return state == DeviceState.RUNNING || state == DeviceState.STOP ? null
                : "device " + device.name() + " is in state " + state + ": a source device must be RUNNING or STOP";
    }

    /** Pre-copy is for devices that support it and run; a stopped device's state does not change, so it stop-copies. */
    boolean canPrecopy() {
        return state == DeviceState.RUNNING && device.flags().preCopy();
    }

    /** The identity a destination checks, with the size as it is now. */
    DeviceIdentity identity() {
        return device.identity().withStateSize(dataSize);
    }

    /** What stop-copy is expected to send, before any read. */
    long expectedSize() {
        return dataSize >= 0 ? dataSize : UNKNOWN_DATA_SIZE;
    }
}
