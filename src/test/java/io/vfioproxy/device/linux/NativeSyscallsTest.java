package io.vfioproxy.device.linux;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.sun.jna.LastErrorException;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Real syscalls without VFIO: the native data path on pipes and files, errno mapping, fd passing. */
class NativeSyscallsTest {

    /** fcntl.h */
    private static final int O_NONBLOCK = 0x800;

    private static final DeviceIdentity ID = new DeviceIdentity("native", "test", "none", 0);

    private static int[] pipe() {
        int[] fds = new int[2];
        LibC.pipe2(fds, LibC.O_CLOEXEC);
        return fds;
    }

    @Test
    void readsAndWritesThroughNativeMemoryOnAPipe() throws Exception {
        int[] p = pipe();
        NativeDevice owner = VfioOpen.adopt("pipe", LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC), ID);
        NativeDataChannel writer = new NativeDataChannel(owner, p[1]);
        NativeDataChannel reader = new NativeDataChannel(owner, p[0]);
        ByteBuffer out = ByteBuffer.allocateDirect(40_000);
        for (int i = 0; i < out.capacity(); i++) {
            out.put(i, (byte) (i * 31));
        }
        out.position(100);
        writer.write(out);
        assertThat(out.hasRemaining()).isFalse();
        writer.close();
        ByteBuffer in = ByteBuffer.allocateDirect(64 << 10);
        in.position(7);
        long total = 0;
        int n;
        while ((n = reader.read(in)) > 0) {
            total += n;
        }
        assertThat(total).isEqualTo(40_000 - 100);
        for (int i = 0; i < total; i++) {
            assertThat(in.get(7 + i)).isEqualTo((byte) ((100 + i) * 31));
        }
        reader.close();
        owner.close();
    }

    @Test
    void aWriteThatReturnsZeroIsAnIoErrorNotASpin() throws Exception {
        // No fd here answers write() with 0 for a non-empty buffer, as a driver may: the syscall stands in for it.
        NativeDevice owner = VfioOpen.adopt("zero", LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC), ID);
        int[] calls = {0};
        NativeDataChannel stuck = new NativeDataChannel(owner, -1, (fd, from, length) -> {
            calls[0]++;
            return calls[0] == 1 ? 10 : 0;
        });
        ByteBuffer data = ByteBuffer.allocateDirect(100);
        assertThatThrownBy(() -> stuck.write(data)).isInstanceOfSatisfying(VfioException.class, e -> {
            assertThat(e.errno()).isEqualTo(Errno.EIO.value());
            assertThat(e.getMessage()).contains("zero: write(data_fd)").contains("write() returned 0 with 90 bytes");
        });
        assertThat(calls[0]).isEqualTo(2);
        owner.close();
    }

    @Test
    void heapBuffersGoThroughAStagingBuffer(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("data");
        NativeDevice owner = VfioOpen.adopt("file", LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC), ID);
        int wfd = LibC.open(file.toString(), 0x41 | LibC.O_CLOEXEC); // O_WRONLY | O_CREAT
        NativeDataChannel w = new NativeDataChannel(owner, wfd);
        byte[] text = "vfio migration data".repeat(100_000).getBytes(StandardCharsets.US_ASCII);
        w.write(ByteBuffer.wrap(text));
        w.close();
        assertThat(Files.readAllBytes(file)).isEqualTo(text);
        NativeDataChannel r = new NativeDataChannel(owner, LibC.open(file.toString(), LibC.O_RDONLY | LibC.O_CLOEXEC));
        ByteBuffer heap = ByteBuffer.allocate(text.length);
        while (r.read(heap) > 0) {
            // until end of file
        }
        assertThat(heap.array()).isEqualTo(text);
        r.close();
        assertThatThrownBy(() -> r.read(ByteBuffer.allocateDirect(8))).isInstanceOfSatisfying(VfioException.class,
                e -> assertThat(e.errno()).isEqualTo(Errno.EBADF.value()));
        owner.close();
    }

    @Test
    void theMigrationFeatureOnDevNullIsEnottyNamedForWhatItMeans() throws Exception {
        NativeDevice devNull = VfioOpen.adopt("null0", LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC), ID);
        assertThatThrownBy(devNull::migrationFlags).isInstanceOfSatisfying(VfioException.class, e -> {
            assertThat(e.errno()).isEqualTo(Errno.ENOTTY.value());
            assertThat(e.getMessage()).isEqualTo("null0: GET VFIO_DEVICE_FEATURE_MIGRATION failed in state unknown: "
                    + "ENOTTY (inappropriate ioctl for device): migration not supported by this device or kernel");
        });
        assertThat(devNull.probe(io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_MIGRATION,
                io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_GET)).isFalse();
        assertThatThrownBy(devNull::state).hasMessageContaining("GET VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE")
                .hasMessageContaining("ENOTTY");
        assertThatThrownBy(devNull::reset).hasMessageContaining("VFIO_DEVICE_RESET").hasMessageContaining("ENOTTY");
        devNull.close();
        assertThatThrownBy(devNull::state).hasMessageContaining("EBADF").hasMessageContaining("device closed");
    }

    @Test
    void precopyInfoOnAPipeIsAnErrnoNotACrash() throws Exception {
        int[] p = pipe();
        NativeDevice owner = VfioOpen.adopt("pipe", LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC), ID);
        NativeDataChannel ch = new NativeDataChannel(owner, p[0]);
        assertThatThrownBy(ch::precopyInfo).isInstanceOfSatisfying(VfioException.class,
                e -> assertThat(e.errno()).isEqualTo(Errno.ENOTTY.value()));
        ch.close();
        Syscall.closeQuietly(p[1]);
        owner.close();
    }

    @Test
    void openingAMissingCdevFailsWithTheErrnoAndLeaksNothing() {
        assertThatThrownBy(() -> VfioOpen.cdev("gpu9", "/dev/vfio/devices/vfio999", ID))
                .isInstanceOfSatisfying(VfioException.class, e -> {
                    assertThat(e.getMessage()).startsWith("gpu9: open /dev/");
                    assertThat(e.errno()).isIn(Errno.ENOENT.value(), Errno.EACCES.value(), Errno.EPERM.value());
                });
        assertThatThrownBy(() -> VfioOpen.group("gpu9", 999_999, "0000:00:00.0", ID))
                .isInstanceOf(VfioException.class).hasMessageStartingWith("gpu9: open /dev/vfio/");
    }

    @Test
    void passesAnFdOverAUnixSocket() throws Exception {
        int[] pair = FdHandoff.socketPair();
        int[] p = pipe();
        FdHandoff.send(pair[0], p[1], "0000:3b:00.1");
        FdHandoff.Received got = FdHandoff.receive(pair[1]);
        assertThat(got.label()).isEqualTo("0000:3b:00.1");
        assertThat(got.fd()).isNotEqualTo(p[1]);
        NativeDevice owner = VfioOpen.adopt("x", LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC), ID);
        NativeDataChannel viaReceived = new NativeDataChannel(owner, got.fd());
        viaReceived.write(ByteBuffer.allocateDirect(5).put(0, "hello".getBytes(StandardCharsets.US_ASCII)));
        NativeDataChannel reader = new NativeDataChannel(owner, p[0]);
        ByteBuffer in = ByteBuffer.allocateDirect(5);
        reader.read(in);
        assertThat(StandardCharsets.US_ASCII.decode(in.flip()).toString()).isEqualTo("hello");
        viaReceived.close();
        reader.close();
        Syscall.closeQuietly(p[1]);
        Syscall.closeQuietly(pair[0]);
        Syscall.closeQuietly(pair[1]);
        owner.close();
    }

    @Test
    void aMessageWithoutAnFdIsRefused() throws Exception {
        int[] pair = FdHandoff.socketPair();
        com.sun.jna.Memory m = new com.sun.jna.Memory(3);
        m.write(0, "abc".getBytes(StandardCharsets.US_ASCII), 0, 3);
        LibC.write(pair[0], m, new com.sun.jna.NativeLong(3));
        assertThatThrownBy(() -> FdHandoff.receive(pair[1])).hasMessage("the peer sent 3 bytes but no fd (SCM_RIGHTS)");
        assertThatThrownBy(() -> FdHandoff.receive("/nonexistent/vmp.sock")).hasMessageContaining("ENOENT");
        Syscall.closeQuietly(pair[0]);
        Syscall.closeQuietly(pair[1]);
    }

    @Test
    void handsADeviceWithItsIommufdToAConsumerListeningOnAUnixSocket(@TempDir Path dir) throws Exception {
        // Pipes stand in for the device fd and its iommufd: what matters is that the consumer gets the same open
        // files, in order, with the device's address, and that the agent's copies are closed afterwards.
        int[] device = new int[2];
        LibC.pipe2(device, LibC.O_CLOEXEC | O_NONBLOCK);
        int[] iommu = pipe();
        NativeDevice held = VfioOpen.adopt("gpu0", new int[] {device[1], iommu[1]}, "0000:3b:00.1", ID);
        String path = dir.resolve("vmm.sock").toString();
        int listening = FdHandoff.listen(path);
        assertThat(Files.getPosixFilePermissions(Path.of(path))).containsExactlyInAnyOrder(
                java.nio.file.attribute.PosixFilePermission.OWNER_READ,
                java.nio.file.attribute.PosixFilePermission.OWNER_WRITE);
        java.util.concurrent.CompletableFuture<FdHandoff.Received> consumer = java.util.concurrent.CompletableFuture
                .supplyAsync(() -> {
                    try {
                        return FdHandoff.accept(listening);
                    } catch (java.io.IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                });
        held.handOver(path);
        FdHandoff.Received got = consumer.get(30, java.util.concurrent.TimeUnit.SECONDS);
        assertThat(got.label()).isEqualTo("0000:3b:00.1");
        assertThat(got.fds()).hasSize(2);
        assertThat(writeThenRead(got.fds()[0], device[0], "dev")).isEqualTo("dev");
        assertThat(writeThenRead(got.fds()[1], iommu[0], "iommu")).isEqualTo("iommu");
        assertErrnoOf(() -> held.state(), Errno.EBADF);
        for (int fd : got.fds()) {
            FdHandoff.close(fd);
        }
        // The agent's copy is closed too: with the consumer's gone, no writer is left, and the pipe reads EOF
        // (were one open, this non-blocking read would fail with EAGAIN).
        assertThat(LibC.read(device[0], new com.sun.jna.Memory(1), new com.sun.jna.NativeLong(1)).longValue())
                .isZero();
        FdHandoff.close(listening);
        FdHandoff.close(device[0]);
        FdHandoff.close(iommu[0]);
    }

    @Test
    void aHandOverToNobodyFailsWithTheReasonAndKeepsTheDevice(@TempDir Path dir) throws Exception {
        int[] device = pipe();
        NativeDevice held = VfioOpen.adopt("gpu0", new int[] {device[1]}, "0000:3b:00.1", ID);
        assertThatThrownBy(() -> held.handOver(dir.resolve("nobody.sock").toString()))
                .isInstanceOf(VfioException.class).hasMessageContaining("gpu0").hasMessageContaining("ENOENT");
        // Still the agent's: its fd is open.
        assertThat(writeThenRead(device[1], device[0], "kept")).isEqualTo("kept");
        held.close();
        FdHandoff.close(device[0]);
    }

    private static String writeThenRead(int writeFd, int readFd, String text) throws Exception {
        NativeDevice owner = VfioOpen.adopt("x", LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC), ID);
        byte[] bytes = text.getBytes(StandardCharsets.US_ASCII);
        com.sun.jna.Memory m = new com.sun.jna.Memory(bytes.length);
        m.write(0, bytes, 0, bytes.length);
        LibC.write(writeFd, m, new com.sun.jna.NativeLong(bytes.length));
        ByteBuffer in = ByteBuffer.allocateDirect(bytes.length);
        new NativeDataChannel(owner, readFd).read(in);
        owner.close();
        return StandardCharsets.US_ASCII.decode(in.flip()).toString();
    }

    private static void assertErrnoOf(org.assertj.core.api.ThrowableAssert.ThrowingCallable call, Errno errno) {
        assertThatThrownBy(call).isInstanceOfSatisfying(VfioException.class,
                e -> assertThat(e.errno()).as(e.getMessage()).isEqualTo(errno.value()));
    }

    @Test
    void lastErrorExceptionCarriesTheErrno() {
        assertThatThrownBy(() -> LibC.close(-1)).isInstanceOfSatisfying(LastErrorException.class,
                e -> assertThat(e.getErrorCode()).isEqualTo(Errno.EBADF.value()));
        assertThat(DeviceState.RUNNING.value()).isEqualTo(2);
    }
}
