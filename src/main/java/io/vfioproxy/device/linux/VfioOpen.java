package io.vfioproxy.device.linux;

import static io.vfioproxy.uapi.VfioUapi.IOMMU_IOAS_ALLOC;
import static io.vfioproxy.uapi.VfioUapi.VFIO_API_VERSION;
import static io.vfioproxy.uapi.VfioUapi.VFIO_CHECK_EXTENSION;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT;
import static io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_BIND_IOMMUFD;
import static io.vfioproxy.uapi.VfioUapi.VFIO_GET_API_VERSION;
import static io.vfioproxy.uapi.VfioUapi.VFIO_GROUP_FLAGS_VIABLE;
import static io.vfioproxy.uapi.VfioUapi.VFIO_GROUP_GET_DEVICE_FD;
import static io.vfioproxy.uapi.VfioUapi.VFIO_GROUP_GET_STATUS;
import static io.vfioproxy.uapi.VfioUapi.VFIO_GROUP_SET_CONTAINER;
import static io.vfioproxy.uapi.VfioUapi.VFIO_SET_IOMMU;
import static io.vfioproxy.uapi.VfioUapi.VFIO_TYPE1v2_IOMMU;

import com.sun.jna.Memory;
import com.sun.jna.NativeLong;
import com.sun.jna.Pointer;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.Errno;
import java.util.ArrayList;
import java.util.List;

/**
 * Opens a VFIO device the three ways a node has: the device cdev with iommufd (kernel 6.6+), the legacy
 * group and container, or an fd another process already opened and handed over. Every fd opened on the way is
 * closed again when a later step fails.
 */
public final class VfioOpen {

    /** struct vfio_device_bind_iommufd {argsz, flags, iommufd, out_devid}: 16 bytes on 6.12. */
    static final int BIND_IOMMUFD_SIZE = 16;
    /** struct iommu_ioas_alloc {size, flags, out_ioas_id}. */
    static final int IOAS_ALLOC_SIZE = 12;
    /** struct vfio_device_attach_iommufd_pt {argsz, flags, pt_id}. */
    static final int ATTACH_PT_SIZE = 12;
    /** struct vfio_group_status {argsz, flags}. */
    static final int GROUP_STATUS_SIZE = 8;

    private VfioOpen() {
    }

    private static int ioctl(String device, String call, int fd, int request, Pointer arg) throws VfioException {
        return Syscall.run(device, call, null, () -> LibC.ioctl(fd, new NativeLong(request), arg));
    }

    private static int open(String device, String path, int flags) throws VfioException {
        return Syscall.run(device, "open " + path, null, () -> LibC.open(path, flags | LibC.O_CLOEXEC));
    }

    /** cdev path: open /dev/vfio/devices/vfioN and /dev/iommu, bind, allocate an IOAS, attach. */
    public static NativeDevice cdev(String name, String cdevPath, DeviceIdentity identity) throws VfioException {
        return cdev(name, cdevPath, "", identity);
    }

    /** The same, for the device whose PCI address or mdev UUID is {@code address}. */
    public static NativeDevice cdev(String name, String cdevPath, String address, DeviceIdentity identity)
            throws VfioException {
        List<Integer> fds = new ArrayList<>();
        int device = -1;
        try {
            int iommufd = open(name, "/dev/iommu", LibC.O_RDWR);
            fds.add(iommufd);
            device = open(name, cdevPath, LibC.O_RDWR);
            Memory bind = new Memory(BIND_IOMMUFD_SIZE);
            bind.clear();
            bind.setInt(0, BIND_IOMMUFD_SIZE);
            bind.setInt(8, iommufd);
            ioctl(name, "VFIO_DEVICE_BIND_IOMMUFD", device, VFIO_DEVICE_BIND_IOMMUFD, bind);
            Memory ioas = new Memory(IOAS_ALLOC_SIZE);
            ioas.clear();
            ioas.setInt(0, IOAS_ALLOC_SIZE);
            ioctl(name, "IOMMU_IOAS_ALLOC", iommufd, IOMMU_IOAS_ALLOC, ioas);
            Memory attach = new Memory(ATTACH_PT_SIZE);
            attach.clear();
            attach.setInt(0, ATTACH_PT_SIZE);
            attach.setInt(8, ioas.getInt(8));
            ioctl(name, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", device, VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach);
            return new NativeDevice(name, address, device, fds, identity);
        } catch (VfioException | RuntimeException e) {
            Syscall.closeQuietly(device);
            fds.forEach(Syscall::closeQuietly);
            throw e;
        }
    }

    /**
     * Legacy path: a container with a type1v2 IOMMU, the device's group, then the device fd by its name (PCI
     * address or mdev UUID).
     */
    public static NativeDevice group(String name, int group, String deviceName, DeviceIdentity identity)
            throws VfioException {
        List<Integer> fds = new ArrayList<>();
        try {
            int container = open(name, "/dev/vfio/vfio", LibC.O_RDWR);
            fds.add(container);
            int version = ioctl(name, "VFIO_GET_API_VERSION", container, VFIO_GET_API_VERSION, Pointer.NULL);
            if (version != VFIO_API_VERSION) {
                throw new VfioException(name, "VFIO_GET_API_VERSION", null, Errno.EINVAL,
                        "unknown VFIO API version " + version);
            }
            if (ioctl(name, "VFIO_CHECK_EXTENSION", container, VFIO_CHECK_EXTENSION,
                    new Pointer(VFIO_TYPE1v2_IOMMU)) != 1) {
                throw new VfioException(name, "VFIO_CHECK_EXTENSION", null, Errno.EOPNOTSUPP,
                        "the kernel has no type1v2 IOMMU");
            }
            int groupFd = open(name, "/dev/vfio/" + group, LibC.O_RDWR);
            fds.add(groupFd);
            Memory status = new Memory(GROUP_STATUS_SIZE);
            status.clear();
            status.setInt(0, GROUP_STATUS_SIZE);
            ioctl(name, "VFIO_GROUP_GET_STATUS", groupFd, VFIO_GROUP_GET_STATUS, status);
            if ((status.getInt(4) & VFIO_GROUP_FLAGS_VIABLE) == 0) {
                throw new VfioException(name, "VFIO_GROUP_GET_STATUS", null, Errno.EPERM, "group " + group
                        + " is not viable: bind every device of the group to a VFIO driver");
            }
            Memory containerFd = new Memory(4);
            containerFd.setInt(0, container);
            ioctl(name, "VFIO_GROUP_SET_CONTAINER", groupFd, VFIO_GROUP_SET_CONTAINER, containerFd);
            ioctl(name, "VFIO_SET_IOMMU", container, VFIO_SET_IOMMU, new Pointer(VFIO_TYPE1v2_IOMMU));
            Memory devName = new Memory(deviceName.length() + 1L);
            devName.setString(0, deviceName);
            int device = ioctl(name, "VFIO_GROUP_GET_DEVICE_FD " + deviceName, groupFd, VFIO_GROUP_GET_DEVICE_FD,
                    devName);
            return new NativeDevice(name, deviceName, device, fds, identity);
        } catch (VfioException | RuntimeException e) {
            fds.forEach(Syscall::closeQuietly);
            throw e;
        }
    }

    /** An fd handed over by its owner (see {@link FdHandoff}); the device is closed with it. */
    public static NativeDevice adopt(String name, int deviceFd, DeviceIdentity identity) {
        return adopt(name, new int[] {deviceFd}, "", identity);
    }

    /**
     * Fds handed over by their owner, the device's first (then its iommufd, or its container and group, where the
     * owner sends them), for the device at {@code address}; all are closed with the device.
     */
    public static NativeDevice adopt(String name, int[] fds, String address, DeviceIdentity identity) {
        List<Integer> owned = new ArrayList<>();
        for (int i = 1; i < fds.length; i++) {
            owned.add(fds[i]);
        }
        return new NativeDevice(name, address, fds[0], owned, identity);
    }
}
