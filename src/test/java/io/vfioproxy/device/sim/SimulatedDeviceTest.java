package io.vfioproxy.device.sim;

import static io.vfioproxy.uapi.DeviceState.ERROR;
import static io.vfioproxy.uapi.DeviceState.PRE_COPY;
import static io.vfioproxy.uapi.DeviceState.PRE_COPY_P2P;
import static io.vfioproxy.uapi.DeviceState.RESUMING;
import static io.vfioproxy.uapi.DeviceState.RUNNING;
import static io.vfioproxy.uapi.DeviceState.STOP;
import static io.vfioproxy.uapi.DeviceState.STOP_COPY;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceKind;
import io.vfioproxy.device.PrecopyInfo;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import io.vfioproxy.uapi.MigrationFlags;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.Optional;
import org.assertj.core.api.ThrowableAssert.ThrowingCallable;
import org.junit.jupiter.api.Test;

class SimulatedDeviceTest {

    private static final MigrationFlags ALL = MigrationFlags.ALL;
    private static final int PAGE = 4096;
    private static final long SIZE = 64 * PAGE;

    private static SimulatedDevice device(String name, long seed) {
        return SimulatedDevice.builder(name, SIZE).pageSize(PAGE).flags(ALL).seed(seed).build();
    }

    private static void assertErrno(ThrowingCallable call, Errno errno) {
        assertThatThrownBy(call).isInstanceOfSatisfying(VfioException.class,
                e -> assertThat(e.errno()).as(e.getMessage()).isEqualTo(errno.value()));
    }

    /** Reads a saving session to its end in reads of {@code step} bytes. */
    private static byte[] drain(DataChannel channel, int step) throws VfioException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteBuffer buf = ByteBuffer.allocateDirect(step);
        while (true) {
            buf.clear();
            int n = channel.read(buf);
            if (n == 0) {
                return out.toByteArray();
            }
            byte[] chunk = new byte[n];
            buf.flip().get(chunk);
            out.write(chunk, 0, n);
        }
    }

    private static byte[] save(SimulatedDevice d, int step) throws VfioException {
        DataChannel ch = d.setState(STOP_COPY).orElseThrow();
        byte[] stream = drain(ch, step);
        ch.close();
        return stream;
    }

    private static void load(SimulatedDevice d, byte[] stream, int step) throws VfioException {
        DataChannel ch = d.setState(RESUMING).orElseThrow();
        for (int off = 0; off < stream.length; off += step) {
            ch.write(ByteBuffer.wrap(stream, off, Math.min(step, stream.length - off)));
        }
        d.setState(STOP);
        ch.close();
    }

    @Test
    void stopCopyStreamLoadsIntoAnotherDeviceWhateverTheSegmentation() throws Exception {
        SimulatedDevice source = device("src", 1);
        source.dirtyPages(100, 7);
        long digest = source.stateDigest();
        assertThat(source.stopCopySize()).isEqualTo(source.fullStreamSize());
        byte[] stream = save(source, 1000);
        assertThat(stream).hasSize((int) source.fullStreamSize());
        assertThat(source.state()).isEqualTo(STOP_COPY);

        SimulatedDevice dest = device("dst", 99);
        assertThat(dest.stateDigest()).isNotEqualTo(digest);
        load(dest, stream, 333);
        assertThat(dest.state()).isEqualTo(STOP);
        assertThat(dest.stateDigest()).isEqualTo(digest);
        dest.setState(RUNNING);
        assertThat(dest.stateDigest()).isEqualTo(digest);
    }

    @Test
    void aDeviceWithADataRateMovesItsStreamNoFasterAndUnchanged() throws Exception {
        // 1 MB/s over a 64-page state (about 266 KB of stream): saving and loading each take at least a quarter of
        // a second. Only a lower bound is asserted: a busy machine makes it slower, never faster.
        SimulatedDevice source = SimulatedDevice.builder("src", SIZE).pageSize(PAGE).seed(1).dataRate(1_000_000)
                .build();
        SimulatedDevice dest = SimulatedDevice.builder("dst", SIZE).pageSize(PAGE).seed(2).dataRate(1_000_000)
                .build();
        long minimumNanos = (long) (source.fullStreamSize() / 1e6 * 1e9);
        long start = System.nanoTime();
        byte[] stream = save(source, 16384);
        long saved = System.nanoTime();
        load(dest, stream, 16384);
        long loaded = System.nanoTime();
        assertThat(saved - start).as("saving at 1 MB/s").isGreaterThanOrEqualTo(minimumNanos);
        assertThat(loaded - saved).as("loading at 1 MB/s").isGreaterThanOrEqualTo(minimumNanos);
        assertThat(dest.stateDigest()).isEqualTo(source.stateDigest());
    }

    @Test
    void readReturnsZeroAtTheEndOfStopCopyData() throws Exception {
        SimulatedDevice d = device("d", 1);
        DataChannel ch = d.setState(STOP_COPY).orElseThrow();
        drain(ch, 65536);
        assertThat(ch.read(ByteBuffer.allocate(16))).isZero();
        assertThat(ch.read(ByteBuffer.allocate(16))).isZero();
    }

    @Test
    void invalidArcsAreEinvalAndLeaveTheStateUnchanged() throws Exception {
        SimulatedDevice d = device("d", 1);
        assertErrno(() -> d.setState(ERROR), Errno.EINVAL);
        assertThat(d.state()).isEqualTo(RUNNING);
        d.setState(STOP_COPY).orElseThrow();
        assertErrno(() -> d.setState(PRE_COPY), Errno.EINVAL);
        assertErrno(() -> d.setState(PRE_COPY_P2P), Errno.EINVAL);
        assertThat(d.state()).isEqualTo(STOP_COPY);
        SimulatedDevice noP2p = SimulatedDevice.builder("n", SIZE).pageSize(PAGE).flags(MigrationFlags.parse("STOP_COPY")).seed(1).build();
        assertErrno(() -> noP2p.setState(DeviceState.RUNNING_P2P), Errno.EINVAL);
        assertErrno(() -> noP2p.setState(PRE_COPY), Errno.EINVAL);
    }

    @Test
    void sessionsEndOnTheKernelsArcsAndOldFdsGiveEnodev() throws Exception {
        SimulatedDevice d = device("d", 1);
        DataChannel save = d.setState(STOP_COPY).orElseThrow();
        assertErrno(() -> save.write(ByteBuffer.allocate(8)), Errno.EBADF);
        assertThat(d.setState(STOP)).isEmpty();
        assertErrno(() -> save.read(ByteBuffer.allocate(8)), Errno.ENODEV);
        DataChannel resume = d.setState(RESUMING).orElseThrow();
        assertErrno(() -> resume.read(ByteBuffer.allocate(8)), Errno.EBADF);
        d.reset();
        assertThat(d.state()).isEqualTo(RUNNING);
        assertErrno(() -> resume.write(ByteBuffer.allocate(8)), Errno.ENODEV);
        resume.close();
        assertErrno(() -> resume.write(ByteBuffer.allocate(8)), Errno.EBADF);
    }

    @Test
    void preCopySessionKeepsItsFdIntoStopCopyAndSignalsTemporaryEndWithEnomsg() throws Exception {
        SimulatedDevice source = device("src", 3);
        DataChannel ch = source.setState(PRE_COPY).orElseThrow();
        PrecopyInfo first = ch.precopyInfo();
        assertThat(first.initialBytes()).isEqualTo(source.fullStreamSize() - SimStream.TRAILER_SIZE);
        assertThat(first.dirtyBytes()).isZero();

        ByteArrayOutputStream stream = new ByteArrayOutputStream();
        ByteBuffer buf = ByteBuffer.allocate(10_000);
        while (true) {
            buf.clear();
            int n;
            try {
                n = ch.read(buf);
            } catch (VfioException e) {
                assertThat(e.is(Errno.ENOMSG)).as(e.getMessage()).isTrue();
                break;
            }
            stream.write(buf.array(), 0, n);
        }
        assertThat(ch.precopyInfo()).isEqualTo(new PrecopyInfo(0, 0));
        // The workload dirties pages that were already sent: they count as dirty bytes and are sent again.
        source.dirtyPages(5, 11);
        assertThat(ch.precopyInfo().dirtyBytes()).isPositive();
        assertThat(source.setState(PRE_COPY_P2P)).isEmpty();
        assertThat(source.setState(STOP_COPY)).isEmpty();
        assertErrno(ch::precopyInfo, Errno.EINVAL);
        stream.writeBytes(drain(ch, 4096));
        long digest = source.stateDigest();

        SimulatedDevice dest = device("dst", 4);
        load(dest, stream.toByteArray(), 5000);
        assertThat(dest.stateDigest()).isEqualTo(digest);
    }

    @Test
    void mttyLikeDeviceReturnsZeroWhenPreCopyIsDrained() throws Exception {
        SimulatedDevice d = SimulatedDevice.builder("m", SIZE).pageSize(PAGE).flags(ALL).seed(1).zeroReadWhenDrained(true).build();
        DataChannel ch = d.setState(PRE_COPY).orElseThrow();
        drain(ch, 8192);
        assertThat(ch.read(ByteBuffer.allocate(64))).isZero();
        assertThat(d.state()).isEqualTo(PRE_COPY);
    }

    @Test
    void truncatedStreamIsRejectedAndTheDeviceStaysResumingUntilReset() throws Exception {
        byte[] stream = save(device("src", 1), 65536);
        SimulatedDevice dest = device("dst", 2);
        DataChannel ch = dest.setState(RESUMING).orElseThrow();
        ch.write(ByteBuffer.wrap(stream, 0, stream.length - 100));
        assertThatThrownBy(() -> dest.setState(STOP)).isInstanceOf(VfioException.class)
                .hasMessageContaining("incomplete stream").hasMessageContaining("EINVAL").hasMessageContaining("dst");
        assertThat(dest.state()).isEqualTo(RESUMING);
        assertErrno(() -> dest.setState(RUNNING), Errno.EINVAL);
        assertThat(dest.state()).isEqualTo(RESUMING);
        dest.reset();
        assertThat(dest.state()).isEqualTo(RUNNING);
    }

    @Test
    void corruptByteIsRejectedAtResumingToStop() throws Exception {
        byte[] stream = save(device("src", 1), 65536);
        stream[SimStream.HEADER_SIZE + SimStream.RECORD_HEADER_SIZE + 5 * (PAGE + 16) + 77] ^= 1;
        SimulatedDevice dest = device("dst", 2);
        DataChannel ch = dest.setState(RESUMING).orElseThrow();
        ch.write(ByteBuffer.wrap(stream));
        assertThatThrownBy(() -> dest.setState(STOP)).hasMessageContaining("page 5 version 1 differs at byte 77");
        assertThat(dest.state()).isEqualTo(RESUMING);
    }

    @Test
    void streamOfAnotherKindOfDeviceFailsTheWriteWithEfault() throws Exception {
        byte[] stream = save(SimulatedDevice.builder("big", 2 * SIZE).pageSize(PAGE).flags(ALL).seed(1).build(), 65536);
        SimulatedDevice dest = device("dst", 2);
        DataChannel ch = dest.setState(RESUMING).orElseThrow();
        assertThatThrownBy(() -> ch.write(ByteBuffer.wrap(stream, 0, 64))).isInstanceOfSatisfying(VfioException.class,
                e -> {
                    assertThat(e.errno()).isEqualTo(Errno.EFAULT.value());
                    assertThat(e.getMessage()).contains("128 pages").contains("has 64");
                });
        assertThatThrownBy(() -> dest.setState(STOP)).hasMessageContaining("EINVAL");
    }

    @Test
    void dataPastTheEndIsEnomem() throws Exception {
        byte[] stream = save(device("src", 1), 65536);
        SimulatedDevice dest = device("dst", 2);
        DataChannel ch = dest.setState(RESUMING).orElseThrow();
        ch.write(ByteBuffer.wrap(stream));
        assertErrno(() -> ch.write(ByteBuffer.wrap(new byte[1])), Errno.ENOMEM);
    }

    @Test
    void injectedArcFaultLeavesTheDeviceBeforeTheArcOrInError() throws Exception {
        FaultPlan faults = new FaultPlan().failArc(STOP, STOP_COPY, Errno.EIO, false);
        SimulatedDevice d = SimulatedDevice.builder("f", SIZE).pageSize(PAGE).flags(ALL).seed(1).faults(faults).build();
        assertErrno(() -> d.setState(STOP_COPY), Errno.EIO);
        assertThat(d.state()).isEqualTo(STOP);

        faults.failArc(STOP, RESUMING, Errno.EIO, true);
        assertErrno(() -> d.setState(RESUMING), Errno.EIO);
        assertThat(d.state()).isEqualTo(ERROR);
        assertErrno(() -> d.setState(RUNNING), Errno.EINVAL);
        assertErrno(() -> d.setState(STOP), Errno.EINVAL);
        d.reset();
        assertThat(d.state()).isEqualTo(RUNNING);
    }

    @Test
    void injectedReadAndWriteFaultsFailAtTheirOffsets() throws Exception {
        SimulatedDevice src = SimulatedDevice.builder("r", SIZE).pageSize(PAGE).flags(ALL).seed(1)
                .faults(new FaultPlan().failReadAt(10_000, Errno.EIO)).build();
        DataChannel ch = src.setState(STOP_COPY).orElseThrow();
        ByteBuffer buf = ByteBuffer.allocate(65536);
        assertThat(ch.read(buf)).isEqualTo(10_000);
        assertErrno(() -> ch.read(buf), Errno.EIO);

        byte[] stream = save(device("ok", 1), 65536);
        SimulatedDevice dst = SimulatedDevice.builder("w", SIZE).pageSize(PAGE).flags(ALL).seed(2)
                .faults(new FaultPlan().failWriteAt(5000, Errno.EIO)).build();
        DataChannel in = dst.setState(RESUMING).orElseThrow();
        in.write(ByteBuffer.wrap(stream, 0, 4000));
        assertErrno(() -> in.write(ByteBuffer.wrap(stream, 4000, 4000)), Errno.EIO);
    }

    @Test
    void aPciFunctionLosesAMigratedStateWhenClosedAnMdevKeepsIt() throws Exception {
        SimulatedDevice source = device("src", 1);
        byte[] stream = save(source, 64 << 10);
        for (DeviceKind kind : DeviceKind.values()) {
            SimulatedDevice target = SimulatedDevice.builder("dst", SIZE).pageSize(PAGE).flags(ALL).seed(2).kind(kind)
                    .build();
            long fresh = target.stateDigest();
            load(target, stream, 64 << 10);
            assertThat(target.stateDigest()).as(kind + " holds the state while open").isEqualTo(source.stateDigest());
            target.close();
            if (kind == DeviceKind.PCI_FUNCTION) {
                // vfio-pci resets a function on its last close: back to where it was when first opened.
                assertThat(target.stateDigest()).isEqualTo(fresh);
                assertThat(target.stateDigest()).isNotEqualTo(source.stateDigest());
            } else {
                assertThat(target.stateDigest()).isEqualTo(source.stateDigest());
            }
        }
    }

    @Test
    void aFourGibDeviceCostsMegabytes() {
        Runtime rt = Runtime.getRuntime();
        System.gc();
        long before = rt.totalMemory() - rt.freeMemory();
        SimulatedDevice big = SimulatedDevice.builder("big", 4L << 30).pageSize(PAGE).flags(ALL).seed(1).build();
        long after = rt.totalMemory() - rt.freeMemory();
        assertThat(big.stateSize()).isEqualTo(4L << 30);
        assertThat(after - before).isLessThan(64L << 20);
        assertThat(Optional.of(big.identity().model())).contains("sim-4096x1048576");
    }
}
