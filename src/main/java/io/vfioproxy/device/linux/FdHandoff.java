package io.vfioproxy.device.linux;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import io.vfioproxy.uapi.Errno;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/**
 * Passes open fds between processes over a unix socket (SCM_RIGHTS): a VMM or a device plugin that owns a VFIO
 * device hands its fd to the agent, and the agent hands a destination device (with its iommufd or its container and
 * group) back to the consumer that will run it.
 *
 * <p>The protocol, the same both ways: the side that has the fds connects to the side that waits for them, which
 * listens on a unix socket, and sends one message: a UTF-8 label as the payload (the device's name, PCI address or
 * UUID) and the fds as SCM_RIGHTS ancillary data, the device fd first. JNA has no msghdr helpers, so the x86_64/arm64
 * LP64 layouts are written by hand below (sys/socket.h, bits/socket.h).
 */
public final class FdHandoff {

    /** struct msghdr: name@0, namelen@8, iov@16, iovlen@24, control@32, controllen@40, flags@48. */
    static final int MSGHDR_SIZE = 56;
    /** struct iovec: base@0, len@8. */
    static final int IOVEC_SIZE = 16;
    /** struct cmsghdr: len@0 (u64), level@8, type@12, then the data. */
    static final int CMSG_HEADER = 16;
    /** CMSG_LEN(sizeof(int)): the 16-byte cmsghdr and one int. */
    static final int CMSG_LEN_ONE_FD = 20;
    /** CMSG_SPACE(sizeof(int)): rounded to 8. */
    static final int CMSG_SPACE_ONE_FD = 24;
    /** struct sockaddr_un: family (u16) and a 108-byte path. */
    static final int SOCKADDR_UN_SIZE = 110;
    /** The most fds one message carries here: a device, its iommufd or its group and container. */
    static final int MAX_FDS = 4;
    /** MSG_CTRUNC: more ancillary data than room; the kernel closed what did not fit. */
    static final int MSG_CTRUNC = 0x8;

    private static final int LABEL_MAX = 4096;

    /**
     * Fds received with their label.
     *
     * @param fds the fds, the device's first
     */
    public record Received(int[] fds, String label) {
        /** The device's fd. */
        public int fd() {
            return fds[0];
        }
    }

    private FdHandoff() {
    }

    /** CMSG_LEN(n * sizeof(int)). */
    static int cmsgLength(int fds) {
        return CMSG_HEADER + 4 * fds;
    }

    /** CMSG_SPACE(n * sizeof(int)): the length rounded up to 8. */
    static int cmsgSpace(int fds) {
        return (cmsgLength(fds) + 7) & ~7;
    }

    private static Memory address(String path) throws IOException {
        byte[] p = path.getBytes(StandardCharsets.UTF_8);
        if (p.length >= SOCKADDR_UN_SIZE - 2) {
            throw new IOException("unix socket path too long: " + path);
        }
        Memory addr = new Memory(SOCKADDR_UN_SIZE);
        addr.clear();
        addr.setShort(0, (short) LibC.AF_UNIX);
        addr.write(2, p, 0, p.length);
        return addr;
    }

    private static int connectTo(String path) throws IOException {
        Memory addr = address(path);
        int sock = -1;
        try {
            sock = LibC.socket(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0);
            LibC.connect(sock, addr, SOCKADDR_UN_SIZE);
            return sock;
        } catch (LastErrorException e) {
            Syscall.closeQuietly(sock);
            throw new IOException("connecting to " + path + " failed: " + Errno.nameOf(e.getErrorCode()), e);
        }
    }

    /** Connects to the owner's unix socket at {@code path} and receives its fds. */
    public static Received receive(String path) throws IOException {
        int sock = connectTo(path);
        try {
            return receive(sock);
        } finally {
            Syscall.closeQuietly(sock);
        }
    }

    /** Receives one message with its fds on the connected socket {@code sock}. */
    public static Received receive(int sock) throws IOException {
        Memory label = new Memory(LABEL_MAX);
        Memory control = new Memory(cmsgSpace(MAX_FDS));
        control.clear();
        Memory msg = message(label, LABEL_MAX, control, cmsgSpace(MAX_FDS));
        long n;
        try {
            n = LibC.recvmsg(sock, msg, LibC.MSG_CMSG_CLOEXEC).longValue();
        } catch (LastErrorException e) {
            throw new IOException("receiving fds failed: " + Errno.nameOf(e.getErrorCode()), e);
        }
        long controlLength = msg.getLong(40);
        if (controlLength < CMSG_LEN_ONE_FD || control.getInt(8) != LibC.SOL_SOCKET
                || control.getInt(12) != LibC.SCM_RIGHTS) {
            throw new IOException("the peer sent " + n + " bytes but no fd (SCM_RIGHTS)");
        }
        int count = (int) ((control.getLong(0) - CMSG_HEADER) / 4);
        int[] fds = new int[count];
        for (int i = 0; i < count; i++) {
            fds[i] = control.getInt(CMSG_HEADER + 4L * i);
        }
        if ((msg.getInt(48) & MSG_CTRUNC) != 0) {
            for (int fd : fds) {
                Syscall.closeQuietly(fd);
            }
            throw new IOException("the peer sent more than " + MAX_FDS + " fds");
        }
        // An empty label travels as one NUL byte: a message needs a payload for its fds to go with it.
        String text = n <= 0 ? "" : new String(label.getByteArray(0, (int) n), StandardCharsets.UTF_8);
        return new Received(fds, text.replace("\0", ""));
    }

    /**
     * A msghdr with one iovec over {@code data} and room for the fds in {@code control}. The iovec lives in the
     * same block, after the msghdr: JNA frees a Memory once Java no longer references it, so a separate iovec
     * could be freed while the kernel still needs it. The caller keeps {@code data} and {@code control}.
     */
    private static Memory message(Memory data, long length, Memory control, long controlLength) {
        Memory msg = new Memory(MSGHDR_SIZE + IOVEC_SIZE);
        msg.clear();
        msg.setPointer(MSGHDR_SIZE, data);
        msg.setLong(MSGHDR_SIZE + 8, length);
        msg.setPointer(16, msg.share(MSGHDR_SIZE));
        msg.setLong(24, 1);
        msg.setPointer(32, control);
        msg.setLong(40, controlLength);
        return msg;
    }

    /** Sends {@code fd} with {@code label} on the connected unix socket {@code sock}. */
    public static void send(int sock, int fd, String label) throws IOException {
        send(sock, new int[] {fd}, label);
    }

    /** Sends {@code fds} (the device's first) with {@code label} on the connected unix socket {@code sock}. */
    public static void send(int sock, int[] fds, String label) throws IOException {
        if (fds.length == 0 || fds.length > MAX_FDS) {
            throw new IllegalArgumentException("one message carries 1 to " + MAX_FDS + " fds, not " + fds.length);
        }
        byte[] bytes = label.getBytes(StandardCharsets.UTF_8);
        // A message needs at least one byte of payload for its ancillary data to go.
        Memory payload = new Memory(Math.max(1, bytes.length));
        payload.clear();
        payload.write(0, bytes, 0, bytes.length);
        Memory control = new Memory(cmsgSpace(fds.length));
        control.clear();
        control.setLong(0, cmsgLength(fds.length));
        control.setInt(8, LibC.SOL_SOCKET);
        control.setInt(12, LibC.SCM_RIGHTS);
        for (int i = 0; i < fds.length; i++) {
            control.setInt(CMSG_HEADER + 4L * i, fds[i]);
        }
        Memory msg = message(payload, Math.max(1, bytes.length), control, cmsgSpace(fds.length));
        try {
            LibC.sendmsg(sock, msg, 0);
        } catch (LastErrorException e) {
            throw new IOException("sending fds failed: " + Errno.nameOf(e.getErrorCode()), e);
        }
    }

    /** Connects to the consumer listening at {@code path} and hands it {@code fds} with {@code label}. */
    public static void sendTo(String path, int[] fds, String label) throws IOException {
        int sock = connectTo(path);
        try {
            send(sock, fds, label);
        } finally {
            Syscall.closeQuietly(sock);
        }
    }

    /**
     * The waiting side (a consumer taking a device back, a VMM's device plugin in tests): a unix socket listening at
     * {@code path}, mode 0600, for one peer at a time. Close it with {@link #close(int)}; the path is the caller's to
     * remove.
     */
    public static int listen(String path) throws IOException {
        Memory addr = address(path);
        int sock = -1;
        try {
            sock = LibC.socket(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0);
            LibC.bind(sock, addr, SOCKADDR_UN_SIZE);
            LibC.chmod(path, 0600);
            LibC.listen(sock, 1);
            return sock;
        } catch (LastErrorException e) {
            Syscall.closeQuietly(sock);
            throw new IOException("listening on " + path + " failed: " + Errno.nameOf(e.getErrorCode()), e);
        }
    }

    /** Waits for one peer on a socket from {@link #listen} and receives its fds. Blocks. */
    public static Received accept(int listening) throws IOException {
        int conn;
        try {
            conn = LibC.accept(listening, null, null);
        } catch (LastErrorException e) {
            throw new IOException("accepting a peer failed: " + Errno.nameOf(e.getErrorCode()), e);
        }
        try {
            return receive(conn);
        } finally {
            Syscall.closeQuietly(conn);
        }
    }

    /** Closes an fd this class returned or received. */
    public static void close(int fd) {
        Syscall.closeQuietly(fd);
    }

    /** A connected pair of unix sockets, for an owner in this process (tests, tools). */
    public static int[] socketPair() throws IOException {
        int[] fds = new int[2];
        try {
            LibC.socketpair(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0, fds);
        } catch (LastErrorException e) {
            throw new IOException("socketpair failed: " + Errno.nameOf(e.getErrorCode()), e);
        }
        return fds;
    }
}
