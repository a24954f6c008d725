package io.vfioproxy.device;

import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import io.vfioproxy.uapi.MigrationFlags;
import io.vfioproxy.uapi.RefusedTransitionException;
import io.vfioproxy.uapi.StateMachine;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Optional;
import java.util.SplittableRandom;

/**
 * A device that obeys the kernel's migration semantics exactly, with a large state that costs almost no memory.
 *
 * <p>The state is {@code pageCount} pages. A page's content is a pure function of (seed, page index, page
 * version): a slice of a 64 KiB pattern drawn from the seed, at an offset mixed from the index and version. So
 * the device holds one int per page, a 4 GiB device costs a few MiB, and a destination checks every byte it
 * receives and, at RESUMING -&gt; STOP, a digest of the whole state.
 *
 * <p>Kernel semantics kept: arcs follow {@link StateMachine} (EINVAL otherwise, state unchanged); data sessions
 * open and close on the kernel's arcs; a saving session's fd is shared by PRE_COPY, PRE_COPY_P2P and STOP_COPY;
 * read() returns 0 at the end of stop-copy data and fails with ENOMSG when pre-copy data is drained for now;
 * writes are accepted only by a resuming session; RESUMING -&gt; STOP rejects incomplete or corrupt data with
 * EINVAL and the device stays in RESUMING until reset; reads and writes on an ended session give ENODEV;
 * ERROR refuses every change until VFIO_DEVICE_RESET, which returns to RUNNING.
 *
 * <p>Stream format (big-endian), opaque to the agent:
 * header {@code u64 magic, u32 pageSize, u32 reserved, u64 pageCount, u64 seed}; records
 * {@code u64 pageIndex, u64 version, pageSize bytes}; trailer {@code u64 -1, u64 stateDigest}.
 */
public final class SimulatedDevice implements MigrationDevice {

    public static final long STREAM_MAGIC = 0x564D5053494D0001L;
    public static final int HEADER_SIZE = 32;
    public static final int RECORD_HEADER_SIZE = 16;
    public static final int TRAILER_SIZE = 16;
    private static final long TRAILER_MARK = -1L;
    private static final int PATTERN_SPAN = 1 << 16;

    private final String name;
    private final MigrationFlags flags;
    private final int pageSize;
    private final int pageCount;
    private final FaultPlan faults;
    private final boolean zeroReadWhenDrained;

    private final double dirtyPagesPerNano;
    private final SplittableRandom workload;
    private long workloadNanos = System.nanoTime();
    private double dirtyCarry;

    private long seed;
    private byte[] pattern;
    private int[] versions;
    private DeviceState state = DeviceState.RUNNING;
    private Session session;
    private boolean closed;

    /**
     * @param sizeBytes the device state size, a multiple of {@code pageSize}
     * @param zeroReadWhenDrained behave like mtty: a drained pre-copy read returns 0 instead of ENOMSG
     */
    public SimulatedDevice(String name, long sizeBytes, int pageSize, MigrationFlags flags, long seed,
            FaultPlan faults, boolean zeroReadWhenDrained) {
        this(name, sizeBytes, pageSize, flags, seed, faults, zeroReadWhenDrained, 0);
    }

    /**
     * @param dirtyBytesPerSecond how fast the simulated workload writes to the state while the device runs
     *        (RUNNING or PRE_COPY); a page written after it was sent is sent again
     */
    public SimulatedDevice(String name, long sizeBytes, int pageSize, MigrationFlags flags, long seed,
            FaultPlan faults, boolean zeroReadWhenDrained, long dirtyBytesPerSecond) {
        if (pageSize < 64 || pageSize > PATTERN_SPAN || Integer.bitCount(pageSize) != 1) {
            throw new IllegalArgumentException(name + ": page size must be a power of two from 64 to 65536, got "
                    + pageSize);
        }
        if (sizeBytes <= 0 || sizeBytes % pageSize != 0 || sizeBytes / pageSize > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(name + ": state size " + sizeBytes
                    + " must be a positive multiple of the page size " + pageSize);
        }
        this.name = name;
        this.flags = flags;
        this.pageSize = pageSize;
        this.pageCount = (int) (sizeBytes / pageSize);
        this.faults = faults == null ? new FaultPlan() : faults;
        this.zeroReadWhenDrained = zeroReadWhenDrained;
        this.seed = seed;
        this.pattern = pattern(seed, pageSize);
        this.versions = new int[pageCount];
        Arrays.fill(versions, 1);
        this.dirtyPagesPerNano = dirtyBytesPerSecond / (double) pageSize / 1e9;
        this.workload = new SplittableRandom(seed ^ 0x5DEECE66DL);
    }

    /**
     * Lets the simulated workload catch up with the clock: while the device runs it dirties pages at its rate.
     * Called under the lock at the start of every operation, so the device changes only while it runs, as a
     * real one does.
     */
    private void runWorkload() {
        long now = System.nanoTime();
        if (dirtyPagesPerNano > 0 && state.isRunning()) {
            dirtyCarry += (now - workloadNanos) * dirtyPagesPerNano;
            long pages = (long) dirtyCarry;
            dirtyCarry -= pages;
            for (long i = 0; i < pages; i++) {
                writePage(workload.nextInt(pageCount));
            }
        }
        workloadNanos = now;
    }

    private void writePage(int page) {
        versions[page]++;
        if (session instanceof SaveSession save) {
            save.pageDirtied(page);
        }
    }

    public SimulatedDevice(String name, long sizeBytes, MigrationFlags flags, long seed) {
        this(name, sizeBytes, 4096, flags, seed, new FaultPlan(), false);
    }

    private static byte[] pattern(long seed, int pageSize) {
        byte[] p = new byte[PATTERN_SPAN + pageSize];
        new SplittableRandom(seed).nextBytes(p);
        return p;
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /** Offset into the pattern where the content of page {@code index} at {@code version} starts. */
    private static int contentOffset(long seed, long index, long version) {
        return (int) (mix(seed ^ mix(index * 0x9E3779B97F4A7C15L + version)) >>> 48);
    }

    private static long digest(long seed, int pageSize, int[] versions) {
        long h = mix(seed ^ ((long) pageSize << 32) ^ versions.length);
        for (int i = 0; i < versions.length; i++) {
            h = mix(h + versions[i] * 0x9E3779B97F4A7C15L + i);
        }
        return h;
    }

    private int recordSize() {
        return RECORD_HEADER_SIZE + pageSize;
    }

    /** The bytes a full stop-copy stream of this device has. */
    public long fullStreamSize() {
        return HEADER_SIZE + (long) pageCount * recordSize() + TRAILER_SIZE;
    }

    /** The state size: pages times page size. */
    public long stateSize() {
        return (long) pageCount * pageSize;
    }

    /** A digest of the whole device state (seed and every page version); equal digests mean equal states. */
    public synchronized long stateDigest() {
        return digest(seed, pageSize, versions);
    }

    /** The fault plan, to arm or clear faults at run time. */
    public FaultPlan faults() {
        return faults;
    }

    /**
     * Simulates the workload writing {@code count} pages chosen from {@code rngSeed}. Only a running device
     * changes its state; in any other state this does nothing and returns 0. A page already sent in an open
     * pre-copy session is marked dirty, to be sent again.
     *
     * @return the number of page writes applied
     */
    public synchronized long dirtyPages(long count, long rngSeed) {
        if (!state.isRunning()) {
            return 0;
        }
        SplittableRandom rng = new SplittableRandom(rngSeed);
        for (long i = 0; i < count; i++) {
            writePage(rng.nextInt(pageCount));
        }
        return count;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public synchronized DeviceIdentity identity() {
        return new DeviceIdentity("simulated", "sim-" + pageSize + "x" + pageCount, "simulated", stopCopySizeLocked());
    }

    @Override
    public MigrationFlags migrationFlags() {
        return flags;
    }

    @Override
    public synchronized DeviceState state() throws VfioException {
        checkOpen("GET MIG_DEVICE_STATE");
        runWorkload();
        return state;
    }

    @Override
    public synchronized Optional<DataChannel> setState(DeviceState target) throws VfioException {
        String call = "SET MIG_DEVICE_STATE " + state + " -> " + target;
        checkOpen(call);
        runWorkload();
        List<DeviceState> path;
        try {
            path = StateMachine.path(flags, state, target);
        } catch (RefusedTransitionException refused) {
            throw new VfioException(name, call, state, Errno.EINVAL, refused.getMessage());
        }
        Optional<DataChannel> opened = Optional.empty();
        for (DeviceState next : path) {
            DeviceState from = state;
            if (faults.failsArc(from, next)) {
                if (faults.arcToError()) {
                    endSession();
                    state = DeviceState.ERROR;
                }
                throw new VfioException(name, call, state, faults.arcErrno(),
                        "injected fault on arc " + from + " -> " + next);
            }
            if (from == DeviceState.RESUMING) {
                ((ResumeSession) session).load(call);
            }
            if (StateMachine.closesSession(from, next)) {
                endSession();
            }
            if (StateMachine.opensSession(from, next)) {
                session = next == DeviceState.RESUMING ? new ResumeSession() : new SaveSession();
                opened = Optional.of(session);
            }
            state = next;
        }
        return opened;
    }

    @Override
    public synchronized long stopCopySize() throws VfioException {
        checkOpen("GET MIG_DATA_SIZE");
        runWorkload();
        return stopCopySizeLocked();
    }

    private long stopCopySizeLocked() {
        return session instanceof SaveSession save ? save.remaining() : fullStreamSize();
    }

    @Override
    public synchronized void reset() throws VfioException {
        checkOpen("VFIO_DEVICE_RESET");
        endSession();
        state = DeviceState.RUNNING;
    }

    @Override
    public synchronized void close() {
        endSession();
        closed = true;
    }

    private void checkOpen(String call) throws VfioException {
        if (closed) {
            throw new VfioException(name, call, state, Errno.EBADF, "device closed");
        }
    }

    private void endSession() {
        if (session != null) {
            session.ended = true;
            session = null;
        }
    }

    /** Common fd rules of both session kinds. */
    private abstract class Session implements DataChannel {
        boolean ended;
        boolean fdClosed;

        void checkUsable(String call) throws VfioException {
            if (fdClosed) {
                throw new VfioException(name, call, state, Errno.EBADF, "data fd closed");
            }
            if (ended) {
                throw new VfioException(name, call, state, Errno.ENODEV, "the data session has ended");
            }
        }

        @Override
        public void close() {
            synchronized (SimulatedDevice.this) {
                fdClosed = true;
            }
        }
    }

    /** The saving session shared by PRE_COPY, PRE_COPY_P2P and STOP_COPY. */
    private final class SaveSession extends Session {
        private final ByteBuffer header = ByteBuffer.allocate(HEADER_SIZE);
        private final ByteBuffer recordHeader = ByteBuffer.allocate(RECORD_HEADER_SIZE);
        private final BitSet dirty = new BitSet();
        private int sweepNext;
        private int page = -1;
        private boolean pageInitial;
        private int contentFrom;
        private int contentPos;
        private ByteBuffer trailer;
        private long bytesRead;

        SaveSession() {
            header.putLong(STREAM_MAGIC).putInt(pageSize).putInt(0).putLong(pageCount).putLong(seed).flip();
        }

        void pageDirtied(int p) {
            if (p < sweepNext || p == page) {
                dirty.set(p);
            }
        }

        private long recordRemaining() {
            return page < 0 ? 0 : recordHeader.remaining() + (pageSize - contentPos);
        }

        long initialBytes() {
            return header.remaining() + (long) (pageCount - sweepNext) * recordSize()
                    + (pageInitial ? recordRemaining() : 0);
        }

        long dirtyBytes() {
            return (long) dirty.cardinality() * recordSize() + (pageInitial ? 0 : recordRemaining());
        }

        long remaining() {
            return initialBytes() + dirtyBytes() + (trailer == null ? TRAILER_SIZE : trailer.remaining());
        }

        @Override
        public int read(ByteBuffer dst) throws VfioException {
            synchronized (SimulatedDevice.this) {
                String call = "read(data_fd)";
                checkUsable(call);
                runWorkload();
                int limit = dst.remaining();
                if (faults.readFailAt() >= 0) {
                    long allowed = faults.readFailAt() - bytesRead;
                    if (allowed <= 0 && limit > 0) {
                        throw new VfioException(name, call, state, faults.readErrno(),
                                "injected fault at stream offset " + bytesRead);
                    }
                    limit = (int) Math.min(limit, allowed);
                }
                int start = dst.position();
                int end = start + limit;
                while (dst.position() < end) {
                    if (header.hasRemaining()) {
                        put(header, dst, end);
                    } else if (page >= 0) {
                        emitRecord(dst, end);
                    } else if (trailer != null) {
                        if (!trailer.hasRemaining()) {
                            break;
                        }
                        put(trailer, dst, end);
                    } else if (!nextRecord()) {
                        if (state != DeviceState.STOP_COPY) {
                            break;
                        }
                        trailer = ByteBuffer.allocate(TRAILER_SIZE);
                        trailer.putLong(TRAILER_MARK).putLong(digest(seed, pageSize, versions)).flip();
                    }
                }
                int n = dst.position() - start;
                bytesRead += n;
                if (n == 0 && limit > 0 && state != DeviceState.STOP_COPY && !zeroReadWhenDrained) {
                    throw new VfioException(name, call, state, Errno.ENOMSG, "no pre-copy data for now");
                }
                return n;
            }
        }

        private boolean nextRecord() {
            int p;
            if (sweepNext < pageCount) {
                p = sweepNext++;
                pageInitial = true;
            } else if ((p = dirty.nextSetBit(0)) >= 0) {
                dirty.clear(p);
                pageInitial = false;
            } else {
                return false;
            }
            page = p;
            int version = versions[p];
            recordHeader.clear();
            recordHeader.putLong(p).putLong(version).flip();
            contentFrom = contentOffset(seed, p, version);
            contentPos = 0;
            return true;
        }

        private void emitRecord(ByteBuffer dst, int end) {
            if (recordHeader.hasRemaining()) {
                put(recordHeader, dst, end);
                return;
            }
            int n = Math.min(pageSize - contentPos, end - dst.position());
            dst.put(pattern, contentFrom + contentPos, n);
            contentPos += n;
            if (contentPos == pageSize) {
                page = -1;
            }
        }

        @Override
        public void write(ByteBuffer src) throws VfioException {
            synchronized (SimulatedDevice.this) {
                checkUsable("write(data_fd)");
                throw new VfioException(name, "write(data_fd)", state, Errno.EBADF, "a saving session is read-only");
            }
        }

        @Override
        public PrecopyInfo precopyInfo() throws VfioException {
            synchronized (SimulatedDevice.this) {
                String call = "VFIO_MIG_GET_PRECOPY_INFO";
                checkUsable(call);
                runWorkload();
                if (state != DeviceState.PRE_COPY && state != DeviceState.PRE_COPY_P2P) {
                    throw new VfioException(name, call, state, Errno.EINVAL, "only valid in PRE_COPY and PRE_COPY_P2P");
                }
                return new PrecopyInfo(initialBytes(), dirtyBytes());
            }
        }
    }

    private static void put(ByteBuffer src, ByteBuffer dst, int end) {
        int n = Math.min(src.remaining(), end - dst.position());
        dst.put(dst.position(), src, src.position(), n);
        dst.position(dst.position() + n);
        src.position(src.position() + n);
    }

    /** The resuming session: checks every byte as it arrives and loads the state at RESUMING -&gt; STOP. */
    private final class ResumeSession extends Session {
        private final ByteBuffer header = ByteBuffer.allocate(HEADER_SIZE);
        private final ByteBuffer recordHeader = ByteBuffer.allocate(RECORD_HEADER_SIZE);
        private final int[] loaded = new int[pageCount];
        private final BitSet received = new BitSet(pageCount);
        private long streamSeed;
        private byte[] streamPattern;
        private int page = -1;
        private int version;
        private int contentFrom;
        private int contentPos;
        private boolean complete;
        private long trailerDigest;
        private String corruption;
        private long bytesWritten;

        /** Outside the device lock: a slow device still answers state reads. */
        private void delayWrite() {
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
        public void write(ByteBuffer src) throws VfioException {
            delayWrite();
            synchronized (SimulatedDevice.this) {
                String call = "write(data_fd)";
                checkUsable(call);
                if (faults.writeFailAt() >= 0 && bytesWritten + src.remaining() > faults.writeFailAt()) {
                    throw new VfioException(name, call, state, faults.writeErrno(),
                            "injected fault at stream offset " + faults.writeFailAt());
                }
                while (src.hasRemaining()) {
                    if (complete) {
                        throw new VfioException(name, call, state, Errno.ENOMEM,
                                "data past the end of the device state at stream offset " + bytesWritten);
                    }
                    int before = src.position();
                    if (header.hasRemaining()) {
                        fill(header, src);
                        if (!header.hasRemaining()) {
                            checkHeader(call);
                        }
                    } else if (recordHeader.hasRemaining()) {
                        fill(recordHeader, src);
                        if (!recordHeader.hasRemaining()) {
                            startRecord(call);
                        }
                    } else {
                        checkContent(src);
                    }
                    bytesWritten += src.position() - before;
                }
            }
        }

        private void fill(ByteBuffer into, ByteBuffer src) {
            int n = Math.min(into.remaining(), src.remaining());
            into.put(into.position(), src, src.position(), n);
            into.position(into.position() + n);
            src.position(src.position() + n);
        }

        private void checkHeader(String call) throws VfioException {
            header.flip();
            long magic = header.getLong();
            int ps = header.getInt();
            header.getInt();
            long pc = header.getLong();
            streamSeed = header.getLong();
            if (magic != STREAM_MAGIC) {
                fail(call, Errno.EFAULT, String.format("bad stream magic 0x%016x", magic));
            }
            if (ps != pageSize || pc != pageCount) {
                fail(call, Errno.EFAULT, "stream of a device with " + pc + " pages of " + ps
                        + " bytes, this one has " + pageCount + " of " + pageSize);
            }
            streamPattern = pattern(streamSeed, pageSize);
        }

        private void startRecord(String call) throws VfioException {
            long index = recordHeader.getLong(0);
            long ver = recordHeader.getLong(8);
            if (index == TRAILER_MARK) {
                complete = true;
                trailerDigest = ver;
                return;
            }
            if (index < 0 || index >= pageCount || ver < 0 || ver > Integer.MAX_VALUE) {
                fail(call, Errno.EFAULT, "bad record (page " + index + ", version " + ver + ") at stream offset "
                        + bytesWritten);
            }
            page = (int) index;
            version = (int) ver;
            contentFrom = contentOffset(streamSeed, index, ver);
            contentPos = 0;
        }

        private void checkContent(ByteBuffer src) {
            int n = Math.min(pageSize - contentPos, src.remaining());
            if (corruption == null) {
                int pos = src.position();
                int diff = src.slice(pos, n).mismatch(ByteBuffer.wrap(streamPattern, contentFrom + contentPos, n));
                if (diff >= 0) {
                    corruption = "page " + page + " version " + version + " differs at byte " + (contentPos + diff);
                }
            }
            src.position(src.position() + n);
            contentPos += n;
            if (contentPos == pageSize) {
                loaded[page] = version;
                received.set(page);
                page = -1;
                recordHeader.clear();
            }
        }

        private void fail(String call, Errno errno, String detail) throws VfioException {
            if (corruption == null) {
                corruption = detail;
            }
            throw new VfioException(name, call, state, errno, detail);
        }

        /** RESUMING -&gt; STOP: validates the whole stream, then makes it the device's state. */
        void load(String call) throws VfioException {
            String problem = corruption;
            if (problem == null && !complete) {
                problem = "incomplete stream: " + bytesWritten + " bytes written, no end of state";
            }
            if (problem == null && received.cardinality() != pageCount) {
                problem = "only " + received.cardinality() + " of " + pageCount + " pages received";
            }
            if (problem == null && digest(streamSeed, pageSize, loaded) != trailerDigest) {
                problem = "state digest mismatch";
            }
            if (problem != null) {
                throw new VfioException(name, call, state, Errno.EINVAL, "resume data rejected: " + problem);
            }
            seed = streamSeed;
            pattern = streamPattern;
            versions = loaded;
        }

        @Override
        public int read(ByteBuffer dst) throws VfioException {
            synchronized (SimulatedDevice.this) {
                checkUsable("read(data_fd)");
                throw new VfioException(name, "read(data_fd)", state, Errno.EBADF, "a resuming session is write-only");
            }
        }

        @Override
        public PrecopyInfo precopyInfo() throws VfioException {
            synchronized (SimulatedDevice.this) {
                checkUsable("VFIO_MIG_GET_PRECOPY_INFO");
                throw new VfioException(name, "VFIO_MIG_GET_PRECOPY_INFO", state, Errno.ENOTTY,
                        "not a saving session");
            }
        }
    }
}
