package io.vfioproxy.device.linux;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.jna.Native;
import org.junit.jupiter.api.Test;

/** Struct sizes the native backend writes by hand, against the 6.12 uAPI headers (kernel lab probe). */
class LayoutTest {

    @Test
    void structSizesMatchTheHeaders() {
        assertThat(VfioOpen.BIND_IOMMUFD_SIZE).isEqualTo(16);
        assertThat(VfioOpen.IOAS_ALLOC_SIZE).isEqualTo(12);
        assertThat(VfioOpen.ATTACH_PT_SIZE).isEqualTo(12);
        assertThat(VfioOpen.GROUP_STATUS_SIZE).isEqualTo(8);
    }

    @Test
    void socketLayoutsAreLp64() {
        assertThat(Native.POINTER_SIZE).isEqualTo(8);
        assertThat(Native.LONG_SIZE).isEqualTo(8);
        assertThat(FdHandoff.MSGHDR_SIZE).isEqualTo(56);
        assertThat(FdHandoff.IOVEC_SIZE).isEqualTo(16);
        assertThat(FdHandoff.CMSG_LEN_ONE_FD).isEqualTo(20);
        assertThat(FdHandoff.CMSG_SPACE_ONE_FD).isEqualTo(24);
        assertThat(FdHandoff.SOCKADDR_UN_SIZE).isEqualTo(110);
    }
}
