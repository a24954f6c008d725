package io.vfioproxy.device.linux;

/** Package-private handles the kernel-lab scenarios need. Test-only. */
public final class LabAccess {

    private LabAccess() {
    }

    public static int fd(NativeDevice device) {
        return device.fd();
    }

    public static void close(int fd) {
        Syscall.closeQuietly(fd);
    }
}
