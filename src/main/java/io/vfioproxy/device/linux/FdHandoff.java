package io.vfioproxy.device.linux;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * Passes an open fd between processes over a unix socket (SCM_RIGHTS), so a VMM or a device plugin that owns a
 * VFIO device can delegate its migration to the agent without giving up the device.
 *
 * <p>The owner listens on a unix socket; the agent connects and reads one message: an optional UTF-8 label as
 * the payload and exactly one fd as SCM_RIGHTS ancillary data. JNA has no msghdr helpers, so the x86_64/arm64
 * LP64 layouts are written by hand below (sys/socket.h, bits/socket.h).
 */
public final class FdHandoff {

    /** struct msghdr: name@0, namelen@8, iov@16, iovlen@24, control@32, controllen@40, flags@48. */
    static final int MSGHDR_SIZE = 56;
    /** struct iovec: base@0, len@8. */
    static final int IOVEC_SIZE = 16;
    /** CMSG_LEN(sizeof(int)): the 16-byte cmsghdr (len@0, level@8, type@12) and one int. */
    static final int CMSG_LEN_ONE_FD = 20;
    /** CMSG_SPACE(sizeof(int)): rounded to 8. */
    static final int CMSG_SPACE_ONE_FD = 24;
    /** struct sockaddr_un: family (u16) and a 108-byte path. */
    static final int SOCKADDR_UN_SIZE = 110;

    private static final int LABEL_MAX = 4096;

    /** An fd received with its label. */
    public record Received(int fd, String label) {
    }

    private FdHandoff() {
    }

    /** Connects to the owner's unix socket at {@code path} and receives one fd. */
    public static Received receive(String path) throws IOException {
        byte[] p = path.getBytes(StandardCharsets.UTF_8);
        if (p.length >= SOCKADDR_UN_SIZE - 2) {
            throw new IOException("unix socket path too long: " + path);
        }
        int sock = -1;
        try {
            sock = LibC.socket(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0);
            Memory addr = new Memory(SOCKADDR_UN_SIZE);
            addr.clear();
            addr.setShort(0, (short) LibC.AF_UNIX);
            addr.write(2, p, 0, p.length);
            LibC.connect(sock, addr, SOCKADDR_UN_SIZE);
            return receive(sock);
        } catch (LastErrorException e) {
            throw new IOException("receiving a device fd from " + path + " failed: errno "
                    + io.vfioproxy.uapi.Errno.nameOf(e.getErrorCode()), e);
        } finally {
            Syscall.closeQuietly(sock);
        }
    }

    /** Receives one message with one fd on the connected socket {@code sock}. */
    public static Received receive(int sock) throws IOException {
        Memory label = new Memory(LABEL_MAX);
        Memory control = new Memory(CMSG_SPACE_ONE_FD);
        control.clear();
        Memory msg = message(label, LABEL_MAX, control);
        long n = LibC.recvmsg(sock, msg, LibC.MSG_CMSG_CLOEXEC).longValue();
        long controlLength = msg.getLong(40);
        if (controlLength < CMSG_LEN_ONE_FD || control.getInt(8) != LibC.SOL_SOCKET
                || control.getInt(12) != LibC.SCM_RIGHTS) {
            throw new IOException("the peer sent " + n + " bytes but no fd (SCM_RIGHTS)");
        }
        int fd = control.getInt(16);
        if ((msg.getInt(48) & 0x8) != 0) { // MSG_CTRUNC: more fds than room; the extra ones were closed
            Syscall.closeQuietly(fd);
            throw new IOException("the peer sent more than one fd");
        }
        return new Received(fd, n <= 0 ? "" : new String(label.getByteArray(0, (int) n), StandardCharsets.UTF_8));
    }

    /**
     * A msghdr with one iovec over {@code data} and room for one fd in {@code control}. The iovec lives in the
     * same block, after the msghdr: JNA frees a Memory once Java no longer references it, so a separate iovec
     * could be freed while the kernel still needs it. The caller keeps {@code data} and {@code control}.
     */
    private static Memory message(Memory data, long length, Memory control) {
        Memory msg = new Memory(MSGHDR_SIZE + IOVEC_SIZE);
        msg.clear();
        msg.setPointer(MSGHDR_SIZE, data);
        msg.setLong(MSGHDR_SIZE + 8, length);
        msg.setPointer(16, msg.share(MSGHDR_SIZE));
        msg.setLong(24, 1);
        msg.setPointer(32, control);
        msg.setLong(40, CMSG_SPACE_ONE_FD);
        return msg;
    }

    /** Sends {@code fd} with {@code label} on the connected unix socket {@code sock} (the owner's side). */
    public static void send(int sock, int fd, String label) throws IOException {
        byte[] bytes = label.getBytes(StandardCharsets.UTF_8);
        Memory payload = new Memory(Math.max(1, bytes.length));
        payload.write(0, bytes, 0, bytes.length);
        Memory control = new Memory(CMSG_SPACE_ONE_FD);
        control.clear();
        control.setLong(0, CMSG_LEN_ONE_FD);
        control.setInt(8, LibC.SOL_SOCKET);
        control.setInt(12, LibC.SCM_RIGHTS);
        control.setInt(16, fd);
        Memory msg = message(payload, bytes.length, control);
        try {
            LibC.sendmsg(sock, msg, 0);
        } catch (LastErrorException e) {
            throw new IOException("sending an fd failed: errno " + io.vfioproxy.uapi.Errno.nameOf(e.getErrorCode()), e);
        }
    }

    /** A connected pair of unix sockets, for an owner in this process (tests, tools). */
    public static int[] socketPair() throws IOException {
        int[] fds = new int[2];
        try {
            LibC.socketpair(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0, fds);
        } catch (LastErrorException e) {
            throw new IOException("socketpair failed: errno " + io.vfioproxy.uapi.Errno.nameOf(e.getErrorCode()), e);
        }
        return fds;
    }

}
