package io.vfioproxy.uapi;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** ioctl numbers and struct layouts against ../shared/vfio-facts.md and the kernel lab's probe. */
class VfioUapiTest {

    @Test
    void ioctlNumbersMatchTheHeader() {
        assertThat(VfioUapi.VFIO_GET_API_VERSION).isEqualTo(0x3B64);
        assertThat(VfioUapi.VFIO_CHECK_EXTENSION).isEqualTo(0x3B65);
        assertThat(VfioUapi.VFIO_SET_IOMMU).isEqualTo(0x3B66);
        assertThat(VfioUapi.VFIO_GROUP_GET_STATUS).isEqualTo(0x3B67);
        assertThat(VfioUapi.VFIO_GROUP_SET_CONTAINER).isEqualTo(0x3B68);
        assertThat(VfioUapi.VFIO_GROUP_GET_DEVICE_FD).isEqualTo(0x3B6A);
        assertThat(VfioUapi.VFIO_DEVICE_GET_INFO).isEqualTo(0x3B6B);
        assertThat(VfioUapi.VFIO_DEVICE_RESET).isEqualTo(0x3B6F);
        assertThat(VfioUapi.VFIO_DEVICE_FEATURE).isEqualTo(0x3B75);
        assertThat(VfioUapi.VFIO_DEVICE_BIND_IOMMUFD).isEqualTo(0x3B76);
        assertThat(VfioUapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT).isEqualTo(0x3B77);
        assertThat(VfioUapi.VFIO_DEVICE_DETACH_IOMMUFD_PT).isEqualTo(0x3B78);
        assertThat(VfioUapi.VFIO_MIG_GET_PRECOPY_INFO).isEqualTo(0x3B79);
        assertThat(VfioUapi.IOMMU_IOAS_ALLOC).isEqualTo(0x3B81);
    }

    @Test
    void featureFlagWordsMatchTheHeader() {
        assertThat(VfioUapi.VFIO_DEVICE_FEATURE_GET | VfioUapi.VFIO_DEVICE_FEATURE_MIGRATION).isEqualTo(0x00010001);
        assertThat(VfioUapi.VFIO_DEVICE_FEATURE_SET | VfioUapi.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE)
                .isEqualTo(0x00020002);
        assertThat(VfioUapi.VFIO_DEVICE_FEATURE_GET | VfioUapi.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE).isEqualTo(0x00010009);
        assertThat(VfioUapi.VFIO_DEVICE_FEATURE_PROBE).isEqualTo(0x40000);
        assertThat(VfioUapi.VFIO_DEVICE_FEATURE_HEADER_SIZE + VfioUapi.MIG_STATE_PAYLOAD_SIZE).isEqualTo(16);
        assertThat(VfioUapi.PRECOPY_INFO_SIZE).isEqualTo(24);
        assertThat(VfioUapi.PRECOPY_INFO_INITIAL_BYTES_OFFSET).isEqualTo(8);
        assertThat(VfioUapi.PRECOPY_INFO_DIRTY_BYTES_OFFSET).isEqualTo(16);
    }

    @Test
    void statesCarryTheirUapiValues() {
        assertThat(DeviceState.ERROR.value()).isZero();
        assertThat(DeviceState.STOP.value()).isEqualTo(1);
        assertThat(DeviceState.RUNNING.value()).isEqualTo(2);
        assertThat(DeviceState.STOP_COPY.value()).isEqualTo(3);
        assertThat(DeviceState.RESUMING.value()).isEqualTo(4);
        assertThat(DeviceState.RUNNING_P2P.value()).isEqualTo(5);
        assertThat(DeviceState.PRE_COPY.value()).isEqualTo(6);
        assertThat(DeviceState.PRE_COPY_P2P.value()).isEqualTo(7);
        assertThat(Errno.nameOf(22)).isEqualTo("EINVAL");
        assertThat(Errno.nameOf(25)).isEqualTo("ENOTTY");
        assertThat(Errno.nameOf(42)).isEqualTo("ENOMSG");
        assertThat(Errno.nameOf(999)).isEqualTo("errno 999");
    }
}
