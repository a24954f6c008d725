package io.vfioproxy.device;

import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.MigrationFlags;
import java.util.Optional;

/**
 * One VFIO device as the migration uAPI shows it. The simulated backend and the native (JNA) backend implement
 * it alike. Every method may block: callers run them on the device's own ordered worker context, never on an
 * event loop. Implementations do not second-guess requests; {@link DeviceController} adds QEMU's recovery rules.
 */
public interface MigrationDevice extends AutoCloseable {

    /** The name the agent knows the device by (a cdev path, PCI address, mdev UUID or a configured name). */
    String name();

    /** Vendor, model and driver facts the destination checks for compatibility. */
    DeviceIdentity identity() throws VfioException;

    /** GET VFIO_DEVICE_FEATURE_MIGRATION; ENOTTY where the device or kernel cannot migrate. */
    MigrationFlags migrationFlags() throws VfioException;

    /** GET VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE. */
    DeviceState state() throws VfioException;

    /**
     * SET VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: moves the device to {@code target}, walking the kernel's arcs.
     *
     * @return the data channel when the (last) arc opened a data session
     * @throws VfioException on failure; the device may then be in its original state or any state on the path
     */
    Optional<DataChannel> setState(DeviceState target) throws VfioException;

    /** GET VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: the estimated stop-copy stream length, valid in any state. */
    long stopCopySize() throws VfioException;

    /** VFIO_DEVICE_RESET: back to RUNNING; any open data session ends. */
    void reset() throws VfioException;

    /** Closes every fd the backend opened. */
    @Override
    void close();
}
