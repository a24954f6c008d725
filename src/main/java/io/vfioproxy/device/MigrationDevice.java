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

    /** A PCI function or a mediated device: what a destination may do with it once loaded. */
    DeviceKind kind();

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

    /**
     * Hands the device to the consumer that will run it: its fds go over SCM_RIGHTS to the unix socket at
     * {@code socketPath} ({@code device.linux.FdHandoff}), and this side closes its own. The consumer's fds keep the
     * device open, so nothing resets it. The device is closed here afterwards.
     *
     * @throws VfioException EOPNOTSUPP where the backend has no fd to hand over
     */
    /**
     * A digest of the device's whole internal state, where the backend can tell it (the simulator can; a real
     * device cannot): for tests and the chaos harness, to check that a migrated state arrived whole.
     */
    default java.util.OptionalLong contentDigest() {
        return java.util.OptionalLong.empty();
    }

    default void handOver(String socketPath) throws VfioException {
        throw new VfioException(name(), "hand over to " + socketPath, state(), io.vfioproxy.uapi.Errno.EOPNOTSUPP,
                "this backend has no fd to hand over");
    }

    /** Closes every fd the backend opened. */
    @Override
    void close();
}
