package io.vfioproxy.device.sim;

import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.device.DeviceKind;
import io.vfioproxy.device.MigrationDevice;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import io.vfioproxy.uapi.MigrationFlags;
import io.vfioproxy.uapi.RefusedTransitionException;
import io.vfioproxy.uapi.StateMachine;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import java.util.zip.CRC32C;

/**
 * A device that obeys the kernel's migration semantics exactly, with a large state that costs almost no memory
 * ({@link PageImage}), a workload that dirties it while it runs ({@link Workload}), and a stream of its own format
 * ({@link SimStream}) read by a {@link SaveSession} and checked byte for byte by a {@link ResumeSession}.
 *
 * <p>Kernel semantics kept: arcs follow {@link StateMachine} (EINVAL otherwise, state unchanged); data sessions
 * open and close on the kernel's arcs; a saving session's fd is shared by PRE_COPY, PRE_COPY_P2P and STOP_COPY;
 * read() returns 0 at the end of stop-copy data and fails with ENOMSG when pre-copy data is drained for now;
 * writes are accepted only by a resuming session; RESUMING -&gt; STOP rejects incomplete or corrupt data with
 * EINVAL and the device stays in RESUMING until reset; reads and writes on an ended session give ENODEV; ERROR
 * refuses every change until VFIO_DEVICE_RESET, which returns to RUNNING.
 */
public final class SimulatedDevice implements MigrationDevice {

    /** How a simulated device is made; {@link #build()} checks the sizes. */
    public static final class Builder {
        private final String name;
        private final long sizeBytes;
        private int pageSize = 4096;
        private MigrationFlags flags = MigrationFlags.ALL;
        private long seed = 1;
        private FaultPlan faults = new FaultPlan();
        private boolean zeroReadWhenDrained;
        private long dirtyBytesPerSecond;
        private long dataBytesPerSecond;
        private DeviceKind kind = DeviceKind.MDEV;
        private java.nio.file.Path stateFile;

        private Builder(String name, long sizeBytes) {
            this.name = name;
            this.sizeBytes = sizeBytes;
        }

        /** A power of two from 64 to 65536; 4096 by default. */
        public Builder pageSize(int bytes) {
            this.pageSize = bytes;
            return this;
        }

        /** The migration flags it reports; all three by default. */
        public Builder flags(MigrationFlags f) {
            this.flags = f;
            return this;
        }

        /** What its contents are drawn from. */
        public Builder seed(long s) {
            this.seed = s;
            return this;
        }

        public Builder faults(FaultPlan plan) {
            this.faults = plan;
            return this;
        }

        /** Behave like mtty: a drained pre-copy read returns 0 instead of ENOMSG. */
        public Builder zeroReadWhenDrained(boolean zero) {
            this.zeroReadWhenDrained = zero;
            return this;
        }

        /** How fast its workload writes to the state while it runs; a page written after it was sent goes again. */
        public Builder dirtyRate(long bytesPerSecond) {
            this.dirtyBytesPerSecond = bytesPerSecond;
            return this;
        }

        /**
         * How fast it produces its migration data while saving and absorbs it while resuming, as a device's firmware
         * does at its own pace; 0 (the default) for as fast as the caller moves it.
         */
        public Builder dataRate(long bytesPerSecond) {
            this.dataBytesPerSecond = bytesPerSecond;
            return this;
        }

        /**
         * MDEV (the default) keeps its state across close, as mtty does; PCI_FUNCTION behaves as vfio-pci makes a
         * function behave: reset, its state lost, when its last user closes it.
         */
        public Builder kind(DeviceKind k) {
            this.kind = k;
            return this;
        }

        /**
         * Keeps the state and the migration state in {@code file}, so they outlive the process, as a real device's
         * do: a device opened on an existing file is as the last process left it.
         */
        public Builder stateFile(java.nio.file.Path file) {
            this.stateFile = file;
            return this;
        }

        public SimulatedDevice build() {
            if (pageSize < 64 || pageSize > PageImage.PATTERN_SPAN || Integer.bitCount(pageSize) != 1) {
                throw new IllegalArgumentException(name + ": page size must be a power of two from 64 to 65536, got "
                        + pageSize);
            }
            if (sizeBytes <= 0 || sizeBytes % pageSize != 0 || sizeBytes / pageSize > Integer.MAX_VALUE) {
                throw new IllegalArgumentException(name + ": state size " + sizeBytes
                        + " must be a positive multiple of the page size " + pageSize);
            }
            return new SimulatedDevice(this);
        }
    }

    private final String name;
    private final DeviceKind kind;
    private final long seed;
    private final MigrationFlags flags;
    private final FaultPlan faults;
    private final boolean zeroReadWhenDrained;
    private final Workload workload;
    private final Pacer pacer;
    private PageImage image;
    private DeviceState state = DeviceState.RUNNING;
    /** Where state and migration state outlive the process; null keeps them in memory only. */
    private final StateFile stateFile;
    private Session session;
    private boolean closed;
    /** What MIG_DATA_SIZE reports outside a saving session, where the driver's estimate is not the full stream. */
    private long reportedDataSize = -1;
    private final Calls calls = new Calls();

    /**
     * How often the agent asked the device, for tests of its manners: reads of the data fd, VFIO_MIG_GET_PRECOPY_INFO
     * and MIG_DATA_SIZE. Each is a firmware command under the device's lock on drivers like mlx5.
     */
    public static final class Calls {
        private final AtomicLong reads = new AtomicLong();
        private final AtomicLong precopyInfo = new AtomicLong();
        private final AtomicLong dataSize = new AtomicLong();
        private final CRC32C written = new CRC32C();
        private long writtenBytes;

        public long reads() {
            return reads.get();
        }

        public long precopyInfo() {
            return precopyInfo.get();
        }

        public long dataSize() {
            return dataSize.get();
        }

        /**
         * What the last resuming session was written, as its length and CRC32C: a test compares it with the same
         * prefix of the stream it sent, to see that nothing but those bytes ever reached the device.
         */
        public synchronized long[] resumeWrites() {
            return new long[] {writtenBytes, written.getValue()};
        }

        synchronized void resumeStarted() {
            written.reset();
            writtenBytes = 0;
        }

        synchronized void resumeWrote(ByteBuffer bytes) {
            writtenBytes += bytes.remaining();
            written.update(bytes);
        }

        void read() {
            reads.incrementAndGet();
        }

        void askedPrecopyInfo() {
            precopyInfo.incrementAndGet();
        }
    }

    private SimulatedDevice(Builder b) {
        this.name = b.name;
        this.kind = b.kind;
        this.seed = b.seed;
        this.flags = b.flags;
        this.faults = b.faults;
        this.zeroReadWhenDrained = b.zeroReadWhenDrained;
        int pageCount = (int) (b.sizeBytes / b.pageSize);
        this.image = PageImage.fresh(b.pageSize, pageCount, b.seed);
        this.stateFile = b.stateFile == null ? null : new StateFile(b.stateFile);
        if (stateFile != null) {
            StateFile.Saved saved = stateFile.load(b.pageSize, pageCount);
            if (saved != null) {
                image = saved.image();
                // The data session died with the process that had it: the state is left, the fd is not.
                state = saved.state();
            }
            stateFile.save(state, image);
        }
        this.workload = new Workload(b.dirtyBytesPerSecond, b.pageSize, pageCount, b.seed);
        this.pacer = new Pacer(b.dataBytesPerSecond);
    }

    /** A device named {@code name} with {@code sizeBytes} of state. */
    public static Builder builder(String name, long sizeBytes) {
        return new Builder(name, sizeBytes);
    }

    /** The bytes a full stop-copy stream of this device has. */
    public synchronized long fullStreamSize() {
        return SimStream.size(image.pageSize(), image.pageCount());
    }

    /** The state size: pages times page size. */
    public synchronized long stateSize() {
        return (long) image.pageCount() * image.pageSize();
    }

    /** A digest of the whole device state (seed and every page version); equal digests mean equal states. */
    @Override
    public java.util.OptionalLong contentDigest() {
        return java.util.OptionalLong.of(stateDigest());
    }

    public synchronized long stateDigest() {
        return image.digest();
    }

    /** The agent's calls on this device so far. */
    public Calls calls() {
        return calls;
    }

    /**
     * Makes MIG_DATA_SIZE report {@code bytes} outside a saving session, as a driver whose estimate moves with what
     * the device does (mlx5's does); -1 reports the full stream again.
     */
    public synchronized void reportDataSize(long bytes) {
        this.reportedDataSize = bytes;
    }

    /** The fault plan, to arm or clear faults at run time. */
    public FaultPlan faults() {
        return faults;
    }

    /**
     * Simulates the workload writing {@code count} pages chosen from {@code rngSeed}. Only a running device changes
     * its state; in any other state this does nothing and returns 0. A page already sent in an open pre-copy session
     * is marked dirty, to be sent again.
     *
     * @return the number of page writes applied
     */
    public synchronized long dirtyPages(long count, long rngSeed) {
        if (!state.isRunning()) {
            return 0;
        }
        SplittableRandom rng = new SplittableRandom(rngSeed);
        for (long i = 0; i < count; i++) {
            writePage(rng.nextInt(image.pageCount()));
        }
        return count;
    }

    private void writePage(int page) {
        image.write(page);
        if (session instanceof SaveSession save) {
            save.pageDirtied(page);
        }
    }

    /** Lets the workload catch up with the clock; called under the lock at the start of every operation. */
    void catchUp() {
        workload.catchUp(state.isRunning(), this::writePage);
    }

    /** The state, under the lock. */
    DeviceState stateLocked() {
        return state;
    }

    boolean zeroReadWhenDrained() {
        return zeroReadWhenDrained;
    }

    /** A failed call, named as a real device's would be. */
    VfioException error(String call, Errno errno, String detail) {
        return new VfioException(name, call, state, errno, detail);
    }

    /** Holds a data call that moved {@code bytes} to the device's data rate. Outside the lock. */
    void pace(int bytes) {
        pacer.pace(bytes);
    }

    /** A slow device: each resuming write takes this long. Outside the lock, so state reads still answer. */
    void delayWrite() {
        long millis = faults.writeDelayMillis();
        if (millis > 0) {
            try {
                Thread.sleep(millis);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public DeviceKind kind() {
        return kind;
    }

    @Override
    public synchronized DeviceIdentity identity() {
        // Like the native device: a MIG_DATA_SIZE that fails leaves the size unknown (-1), not the device unopened.
        return new DeviceIdentity("simulated", "sim-" + image.pageSize() + "x" + image.pageCount(), "simulated",
                faults.dataSizeErrno() != null ? -1 : stopCopySizeLocked());
    }

    @Override
    public MigrationFlags migrationFlags() {
        return flags;
    }

    @Override
    public synchronized DeviceState state() throws VfioException {
        checkOpen("GET MIG_DEVICE_STATE");
        catchUp();
        return state;
    }

    @Override
    public synchronized Optional<DataChannel> setState(DeviceState target) throws VfioException {
        String call = "SET MIG_DEVICE_STATE " + state + " -> " + target;
        checkOpen(call);
        catchUp();
        List<DeviceState> path;
        try {
            path = StateMachine.path(flags, state, target);
        } catch (RefusedTransitionException refused) {
            throw error(call, Errno.EINVAL, refused.getMessage());
        }
        Optional<DataChannel> opened = Optional.empty();
        for (DeviceState next : path) {
            DeviceState from = state;
            if (faults.failsArc(from, next)) {
                if (faults.arcToError()) {
                    endSession();
                    state = DeviceState.ERROR;
                }
                persist();
                throw error(call, faults.arcErrno(), "injected fault on arc " + from + " -> " + next);
            }
            if (from == DeviceState.RESUMING) {
                if (!(session instanceof ResumeSession resume)) {
                    // Left in RESUMING by a process that died: what it wrote died with its session.
                    throw error(call, Errno.EINVAL, "no resuming session: the state written to it is gone");
                }
                image = resume.load(call);
            }
            if (StateMachine.closesSession(from, next)) {
                endSession();
            }
            if (StateMachine.opensSession(from, next)) {
                session = next == DeviceState.RESUMING
                        ? new ResumeSession(this, image.pageSize(), image.pageCount())
                        : new SaveSession(this, image);
                opened = Optional.of(session);
            }
            state = next;
        }
        persist();
        return opened;
    }

    @Override
    public synchronized long stopCopySize() throws VfioException {
        checkOpen("GET MIG_DATA_SIZE");
        calls.dataSize.incrementAndGet();
        if (faults.dataSizeErrno() != null) {
            throw error("GET MIG_DATA_SIZE", faults.dataSizeErrno(), "injected fault");
        }
        catchUp();
        return stopCopySizeLocked();
    }

    private long stopCopySizeLocked() {
        if (session instanceof SaveSession save) {
            return save.remaining();
        }
        return reportedDataSize >= 0 ? reportedDataSize : fullStreamSize();
    }

    @Override
    public synchronized void reset() throws VfioException {
        checkOpen("VFIO_DEVICE_RESET");
        if (faults.resetErrno() != null) {
            throw error("VFIO_DEVICE_RESET", faults.resetErrno(), "injected fault");
        }
        endSession();
        state = DeviceState.RUNNING;
        persist();
    }

    private void persist() {
        if (stateFile != null) {
            stateFile.save(state, image);
        }
    }

    /**
     * Closes the device. A PCI function is reset as vfio-pci resets it on its last close: whatever state it held,
     * migrated or not, is gone, and it is RUNNING at its next open.
     */
    @Override
    public synchronized void close() {
        endSession();
        closed = true;
        if (kind == DeviceKind.PCI_FUNCTION) {
            image = PageImage.fresh(image.pageSize(), image.pageCount(), seed);
            state = DeviceState.RUNNING;
        }
        persist();
    }

    private void checkOpen(String call) throws VfioException {
        if (closed) {
            throw error(call, Errno.EBADF, "device closed");
        }
    }

    private void endSession() {
        if (session != null) {
            session.ended = true;
            session = null;
        }
    }
}
