package io.vfioproxy.device.linux;

import com.sun.jna.LastErrorException;
import com.sun.jna.Native;
import com.sun.jna.NativeLong;
import com.sun.jna.Platform;
import com.sun.jna.Pointer;

/**
 * The libc calls the native backend makes, bound with JNA direct mapping (an order of magnitude cheaper per call
 * than interface mapping; no varargs, so {@code ioctl} has one fixed signature). Every call throws
 * {@link LastErrorException} with the errno when it fails.
 *
 * <p>Constants from the x86_64/arm64 Linux headers: fcntl.h, sys/socket.h, bits/socket.h, sys/stat.h.
 */
final class LibC {

    static final int O_RDONLY = 0;
    static final int O_WRONLY = 1;
    static final int O_RDWR = 2;
    static final int O_CLOEXEC = 0x80000;

    static final int AF_UNIX = 1;
    static final int SOCK_STREAM = 1;
    static final int SOCK_CLOEXEC = 0x80000;
    static final int SOL_SOCKET = 1;
    static final int SCM_RIGHTS = 1;
    static final int MSG_CMSG_CLOEXEC = 0x40000000;

    static {
        Native.register(Platform.C_LIBRARY_NAME);
    }

    private LibC() {
    }

    static native int open(String path, int flags) throws LastErrorException;

    static native int close(int fd) throws LastErrorException;

    /** Every VFIO ioctl takes a pointer or a value that fits one (passed as {@code new Pointer(value)}). */
    static native int ioctl(int fd, NativeLong request, Pointer arg) throws LastErrorException;

    static native NativeLong read(int fd, Pointer buf, NativeLong count) throws LastErrorException;

    static native NativeLong write(int fd, Pointer buf, NativeLong count) throws LastErrorException;

    static native int pipe2(int[] fds, int flags) throws LastErrorException;

    static native int socketpair(int domain, int type, int protocol, int[] fds) throws LastErrorException;

    static native int socket(int domain, int type, int protocol) throws LastErrorException;

    static native int connect(int fd, Pointer address, int length) throws LastErrorException;

    static native NativeLong recvmsg(int fd, Pointer message, int flags) throws LastErrorException;

    static native NativeLong sendmsg(int fd, Pointer message, int flags) throws LastErrorException;

    static native int bind(int fd, Pointer address, int length) throws LastErrorException;

    static native int listen(int fd, int backlog) throws LastErrorException;

    static native int accept(int fd, Pointer address, Pointer length) throws LastErrorException;

    static native int chmod(String path, int mode) throws LastErrorException;
}
