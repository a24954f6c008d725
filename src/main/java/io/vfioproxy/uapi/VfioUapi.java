package io.vfioproxy.uapi;

/**
 * ioctl request numbers, feature indexes, flag words and struct layouts of the VFIO migration uAPI.
 *
 * <p>From include/uapi/linux/vfio.h and include/uapi/linux/iommufd.h (Linux 6.12, x86_64/arm64 ioctl encoding).
 * Every VFIO ioctl is {@code _IO(VFIO_TYPE, VFIO_BASE + n)}: no size bits, the kernel reads {@code argsz}.
 */
public final class VfioUapi {

    private VfioUapi() {
    }

    public static final int VFIO_TYPE = ';';
    public static final int VFIO_BASE = 100;
    public static final int VFIO_API_VERSION = 0;
    public static final int VFIO_TYPE1v2_IOMMU = 3;

    /** {@code _IO(type, nr)} in the asm-generic encoding (direction and size bits zero). */
    public static int io(int type, int nr) {
        return (type << 8) | nr;
    }

    public static final int VFIO_GET_API_VERSION = io(VFIO_TYPE, VFIO_BASE);
    public static final int VFIO_CHECK_EXTENSION = io(VFIO_TYPE, VFIO_BASE + 1);
    public static final int VFIO_SET_IOMMU = io(VFIO_TYPE, VFIO_BASE + 2);
    public static final int VFIO_GROUP_GET_STATUS = io(VFIO_TYPE, VFIO_BASE + 3);
    public static final int VFIO_GROUP_SET_CONTAINER = io(VFIO_TYPE, VFIO_BASE + 4);
    public static final int VFIO_GROUP_UNSET_CONTAINER = io(VFIO_TYPE, VFIO_BASE + 5);
    public static final int VFIO_GROUP_GET_DEVICE_FD = io(VFIO_TYPE, VFIO_BASE + 6);
    public static final int VFIO_DEVICE_GET_INFO = io(VFIO_TYPE, VFIO_BASE + 7);
    public static final int VFIO_DEVICE_RESET = io(VFIO_TYPE, VFIO_BASE + 11);
    public static final int VFIO_DEVICE_FEATURE = io(VFIO_TYPE, VFIO_BASE + 17);
    public static final int VFIO_DEVICE_BIND_IOMMUFD = io(VFIO_TYPE, VFIO_BASE + 18);
    public static final int VFIO_DEVICE_ATTACH_IOMMUFD_PT = io(VFIO_TYPE, VFIO_BASE + 19);
    public static final int VFIO_DEVICE_DETACH_IOMMUFD_PT = io(VFIO_TYPE, VFIO_BASE + 20);
    public static final int VFIO_MIG_GET_PRECOPY_INFO = io(VFIO_TYPE, VFIO_BASE + 21);
    /** iommufd.h: IOMMUFD_CMD_BASE 0x80, IOAS_ALLOC is base + 1. */
    public static final int IOMMU_IOAS_ALLOC = io(VFIO_TYPE, 0x81);

    /** VFIO_GROUP_GET_STATUS flags. */
    public static final int VFIO_GROUP_FLAGS_VIABLE = 1;

    // struct vfio_device_feature { __u32 argsz; __u32 flags; __u8 data[]; }
    public static final int VFIO_DEVICE_FEATURE_MASK = 0xffff;
    public static final int VFIO_DEVICE_FEATURE_GET = 1 << 16;
    public static final int VFIO_DEVICE_FEATURE_SET = 1 << 17;
    public static final int VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
    public static final int VFIO_DEVICE_FEATURE_HEADER_SIZE = 8;

    public static final int VFIO_DEVICE_FEATURE_MIGRATION = 1;
    public static final int VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;
    public static final int VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9;

    /** Payload sizes: migration {u64 flags}, mig_state {u32 device_state; s32 data_fd}, mig_data_size {u64}. */
    public static final int MIGRATION_PAYLOAD_SIZE = 8;
    public static final int MIG_STATE_PAYLOAD_SIZE = 8;
    public static final int MIG_DATA_SIZE_PAYLOAD_SIZE = 8;

    /** struct vfio_precopy_info { u32 argsz; u32 flags; u64 initial_bytes; u64 dirty_bytes; }. */
    public static final int PRECOPY_INFO_SIZE = 24;
    public static final int PRECOPY_INFO_INITIAL_BYTES_OFFSET = 8;
    public static final int PRECOPY_INFO_DIRTY_BYTES_OFFSET = 16;
}
