package io.vfioproxy.device.linux;

import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_GET;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_HEADER_SIZE;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_MIGRATION;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_PROBE;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_SET;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_RESET;

import com.sun.jna.Memory;
import com.sun.jna.NativeLong;
import com.sun.jna.Pointer;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.device.DeviceKind;
import io.vfioproxy.device.MigrationDevice;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import io.vfioproxy.uapi.MigrationFlags;
import io.vfioproxy.uapi.RefusedTransitionException;
import io.vfioproxy.uapi.StateMachine;
import java.util.List;
import java.util.Optional;

/**
 * A real VFIO device driven through the migration uAPI: VFIO_DEVICE_FEATURE (MIGRATION, MIG_DEVICE_STATE,
 * MIG_DATA_SIZE) and VFIO_DEVICE_RESET on the device fd. Opened by {@link VfioOpen}; closes every fd it holds.
 *
 * <p>Every state change is checked against the kernel's state machine first: a change the kernel would refuse,
 * or spin on (STOP_COPY -&gt; PRE_COPY on an unfixed kernel), fails with EINVAL before any ioctl.
 */
public final class NativeDevice implements MigrationDevice {

    private static final int FEATURE_ARGSZ = VFIO_DEVICE_FEATURE_HEADER_SIZE + 8;

    private final String name;
    private final String address;
    private final int deviceFd;
    private final List<Integer> ownedFds;
    private final DeviceIdentity baseIdentity;
    private volatile DeviceState lastKnown;
    private MigrationFlags flags;
    private boolean closed;

    /**
     * @param address the PCI address or mdev UUID, or "" where not known
     * @param ownedFds other fds opened for this device (iommufd, container, group), closed after the device fd
     */
    NativeDevice(String name, String address, int deviceFd, List<Integer> ownedFds, DeviceIdentity baseIdentity) {
        this.name = name;
        this.address = address;
        this.deviceFd = deviceFd;
        this.ownedFds = List.copyOf(ownedFds);
        this.baseIdentity = baseIdentity;
    }

    @Override
    public String name() {
        return name;
    }

    /** The state last read or set, or null where a failed call left it unknown. */
    DeviceState lastKnownState() {
        return lastKnown;
    }

    int fd() {
        return deviceFd;
    }

    /** An mdev by its sysfs identity; anything else (a PCI function, or an fd of unknown origin) is treated as PCI. */
    @Override
    public DeviceKind kind() {
        return baseIdentity.model().startsWith("mdev:") ? DeviceKind.MDEV : DeviceKind.PCI_FUNCTION;
    }

    /** The identity, with MIG_DATA_SIZE as it is now, or -1 where the kernel (before 6.2) or driver cannot tell. */
    @Override
    public DeviceIdentity identity() {
        long size;
        try {
            size = stopCopySize();
        } catch (VfioException e) {
            size = -1;
        }
        return new DeviceIdentity(baseIdentity.backend(), baseIdentity.model(), baseIdentity.driver(), size);
    }

    /**
     * Sends the device fd and the fds it needs (its iommufd, or its container and group) to the consumer at
     * {@code socketPath}, labelled with the device's address, then closes this side's copies: the consumer's keep the
     * device open, so vfio-pci does not reset it.
     */
    @Override
    public synchronized void handOver(String socketPath) throws VfioException {
        checkOpen("hand over to " + socketPath);
        int[] fds = new int[1 + ownedFds.size()];
        fds[0] = deviceFd;
        for (int i = 0; i < ownedFds.size(); i++) {
            fds[1 + i] = ownedFds.get(i);
        }
        try {
            FdHandoff.sendTo(socketPath, fds, address.isEmpty() ? name : address);
        } catch (java.io.IOException e) {
            int errno = e.getCause() instanceof com.sun.jna.LastErrorException l ? l.getErrorCode() : Errno.EIO.value();
            throw new VfioException(name, "hand over to " + socketPath, lastKnown, errno, e.getMessage());
        }
        close();
    }

    private static Memory feature(int flags) {
        Memory m = new Memory(FEATURE_ARGSZ);
        m.clear();
        m.setInt(0, FEATURE_ARGSZ);
        m.setInt(4, flags);
        return m;
    }

    private void ioctlFeature(String call, Memory m, String detail) throws VfioException {
        checkOpen(call);
        Syscall.run(name, call, lastKnown, detail,
                () -> LibC.ioctl(deviceFd, new NativeLong(VFIO_DEVICE_FEATURE), m));
    }

    /**
     * VFIO_DEVICE_FEATURE with PROBE: whether the device supports {@code feature} for {@code access}
     * (VFIO_DEVICE_FEATURE_GET, _SET, or both), without doing it. EINVAL (access not supported) and ENOTTY
     * (feature unknown to the device or the kernel) mean no; any other error is thrown.
     */
    public synchronized boolean probe(int feature, int access) throws VfioException {
        Memory m = feature(VFIO_DEVICE_FEATURE_PROBE | access | feature);
        try {
            ioctlFeature("PROBE VFIO_DEVICE_FEATURE " + feature, m, null);
            return true;
        } catch (VfioException e) {
            if (e.is(Errno.EINVAL) || e.is(Errno.ENOTTY)) {
                return false;
            }
            throw e;
        }
    }

    @Override
    public synchronized MigrationFlags migrationFlags() throws VfioException {
        if (flags == null) {
            Memory m = feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION);
            String call = "GET VFIO_DEVICE_FEATURE_MIGRATION";
            try {
                ioctlFeature(call, m, null);
            } catch (VfioException e) {
                if (e.is(Errno.ENOTTY)) {
                    throw new VfioException(name, call, null, Errno.ENOTTY,
                            "migration not supported by this device or kernel");
                }
                throw e;
            }
            MigrationFlags f = new MigrationFlags(m.getLong(8));
            if (!f.stopCopy()) {
                throw new VfioException(name, call, null, Errno.EOPNOTSUPP,
                        "the device reports migration flags " + f + " without STOP_COPY");
            }
            flags = f;
        }
        return flags;
    }

    @Override
    public synchronized DeviceState state() throws VfioException {
        Memory m = feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
        m.setInt(12, -1);
        ioctlFeature("GET VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE", m, null);
        lastKnown = DeviceState.of(m.getInt(8));
        return lastKnown;
    }

    @Override
    public synchronized Optional<DataChannel> setState(DeviceState target) throws VfioException {
        DeviceState current = state();
        String call = "SET VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE " + current + " -> " + target;
        try {
            StateMachine.path(migrationFlags(), current, target);
        } catch (RefusedTransitionException refused) {
            throw new VfioException(name, call, current, Errno.EINVAL, "refused before the ioctl: "
                    + refused.getMessage());
        }
        Memory m = feature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
        m.setInt(8, target.value());
        m.setInt(12, -1);
        try {
            ioctlFeature(call, m, null);
        } catch (VfioException e) {
            lastKnown = null;
            throw e;
        }
        lastKnown = target;
        int dataFd = m.getInt(12);
        return dataFd >= 0 ? Optional.of(new NativeDataChannel(this, dataFd)) : Optional.empty();
    }

    @Override
    public synchronized long stopCopySize() throws VfioException {
        Memory m = feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE);
        ioctlFeature("GET VFIO_DEVICE_FEATURE_MIG_DATA_SIZE", m, null);
        return m.getLong(8);
    }

    @Override
    public synchronized void reset() throws VfioException {
        checkOpen("VFIO_DEVICE_RESET");
        Syscall.run(name, "VFIO_DEVICE_RESET", lastKnown,
                () -> LibC.ioctl(deviceFd, new NativeLong(VFIO_DEVICE_RESET), Pointer.NULL));
        lastKnown = DeviceState.RUNNING;
    }

    private void checkOpen(String call) throws VfioException {
        if (closed) {
            throw new VfioException(name, call, lastKnown, Errno.EBADF, "device closed");
        }
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        Syscall.closeQuietly(deviceFd);
        for (int i = ownedFds.size() - 1; i >= 0; i--) {
            Syscall.closeQuietly(ownedFds.get(i));
        }
    }
}
