package io.vfioproxy.device.linux;

import static io.vfioproxy.uapi.VfioUapi.PRECOPY_INFO_DIRTY_BYTES_OFFSET;
import static io.vfioproxy.uapi.VfioUapi.PRECOPY_INFO_INITIAL_BYTES_OFFSET;
import static io.vfioproxy.uapi.VfioUapi.PRECOPY_INFO_SIZE;
import static io.vfioproxy.uapi.VfioUapi.VFIO_MIG_GET_PRECOPY_INFO;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.NativeLong;
import com.sun.jna.Pointer;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.PrecopyInfo;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import java.nio.ByteBuffer;

/**
 * A migration data fd. Reads and writes go straight between the fd and the native memory of direct buffers;
 * a heap buffer (never on the agent's data path) goes through a direct staging buffer.
 *
 * <p>Real-kernel quirk handled here: mtty's drained pre-copy fd returns 0 where the uAPI says ENOMSG. A 0 read
 * while the device is in PRE_COPY or PRE_COPY_P2P is reported as ENOMSG, the temporary end, so callers see the
 * uAPI's semantics whatever the driver.
 */
final class NativeDataChannel implements DataChannel {

    private static final int STAGING = 1 << 20;

    /** One write(2) of {@code length} bytes at {@code from} to {@code fd}: the bytes written. */
    @FunctionalInterface
    interface Write {
        long write(int fd, Pointer from, long length) throws LastErrorException;
    }

    private static final Write LIBC_WRITE = (fd, from, length) -> LibC.write(fd, from, new NativeLong(length))
            .longValue();

    private final NativeDevice device;
    private final int fd;
    private final Write syscall;
    private ByteBuffer staging;
    private boolean closed;

    NativeDataChannel(NativeDevice device, int fd) {
        this(device, fd, LIBC_WRITE);
    }

    /** With another write(2), for the answers no fd here gives (a driver's write that returns 0). */
    NativeDataChannel(NativeDevice device, int fd, Write syscall) {
        this.device = device;
        this.fd = fd;
        this.syscall = syscall;
    }

    int fd() {
        return fd;
    }

    private static Pointer at(ByteBuffer buf) {
        return Native.getDirectBufferPointer(buf).share(buf.position());
    }

    private ByteBuffer staging() {
        if (staging == null) {
            staging = ByteBuffer.allocateDirect(STAGING);
        }
        return staging.clear();
    }

    private void checkOpen(String call) throws VfioException {
        if (closed) {
            throw new VfioException(device.name(), call, device.lastKnownState(), Errno.EBADF, "data fd closed");
        }
    }

    @Override
    public synchronized int read(ByteBuffer dst) throws VfioException {
        String call = "read(data_fd)";
        checkOpen(call);
        if (!dst.isDirect()) {
            ByteBuffer s = staging();
            s.limit(Math.min(s.capacity(), dst.remaining()));
            int n = read(s);
            dst.put(s.flip());
            return n;
        }
        int n;
        do {
            n = readOnce(dst, call);
        } while (n < 0);
        if (n == 0) {
            DeviceState s = device.lastKnownState();
            if (dst.hasRemaining() && (s == DeviceState.PRE_COPY || s == DeviceState.PRE_COPY_P2P)) {
                throw new VfioException(device.name(), call, s, Errno.ENOMSG,
                        "no pre-copy data for now (the driver returned 0)");
            }
            return 0;
        }
        dst.position(dst.position() + n);
        return n;
    }

    /** One read(); -1 when interrupted, to retry. */
    private int readOnce(ByteBuffer dst, String call) throws VfioException {
        try {
            return (int) Syscall.run(device.name(), call, device.lastKnownState(),
                    () -> LibC.read(fd, at(dst), new NativeLong(dst.remaining()))).longValue();
        } catch (VfioException e) {
            if (e.is(Errno.EINTR)) {
                return -1;
            }
            throw e;
        }
    }

    @Override
    public synchronized void write(ByteBuffer src) throws VfioException {
        String call = "write(data_fd)";
        checkOpen(call);
        if (!src.isDirect()) {
            while (src.hasRemaining()) {
                ByteBuffer s = staging();
                int n = Math.min(s.capacity(), src.remaining());
                s.put(s.position(), src, src.position(), n).limit(n);
                write(s);
                src.position(src.position() + n);
            }
            return;
        }
        while (src.hasRemaining()) {
            long n;
            try {
                n = Syscall.run(device.name(), call, device.lastKnownState(),
                        () -> syscall.write(fd, at(src), src.remaining()));
            } catch (VfioException e) {
                if (e.is(Errno.EINTR)) {
                    continue;
                }
                throw e;
            }
            if (n == 0) {
                // No progress: retrying would spin on the device's thread for ever. QEMU's channel writes fail here.
                throw new VfioException(device.name(), call, device.lastKnownState(), Errno.EIO,
                        "write() returned 0 with " + src.remaining() + " bytes to write");
            }
            src.position(src.position() + (int) n);
        }
    }

    @Override
    public synchronized PrecopyInfo precopyInfo() throws VfioException {
        String call = "VFIO_MIG_GET_PRECOPY_INFO";
        checkOpen(call);
        Memory m = new Memory(PRECOPY_INFO_SIZE);
        m.clear();
        m.setInt(0, PRECOPY_INFO_SIZE);
        Syscall.run(device.name(), call, device.lastKnownState(),
                () -> LibC.ioctl(fd, new NativeLong(VFIO_MIG_GET_PRECOPY_INFO), m));
        return new PrecopyInfo(m.getLong(PRECOPY_INFO_INITIAL_BYTES_OFFSET), m.getLong(PRECOPY_INFO_DIRTY_BYTES_OFFSET));
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            Syscall.closeQuietly(fd);
        }
    }
}
