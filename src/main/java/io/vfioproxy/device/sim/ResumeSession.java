package io.vfioproxy.device.sim;

import io.vfioproxy.device.PrecopyInfo;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.Errno;
import java.nio.ByteBuffer;
import java.util.BitSet;

/**
 * The resuming session: checks every byte as it arrives, in any segmentation, and loads the state at
 * RESUMING -&gt; STOP, which rejects (EINVAL) a stream that is incomplete, corrupt, or of another kind of device.
 */
final class ResumeSession extends Session {

    private final int pageSize;
    private final int pageCount;
    private final ByteBuffer header = ByteBuffer.allocate(SimStream.HEADER_SIZE);
    private final ByteBuffer recordHeader = ByteBuffer.allocate(SimStream.RECORD_HEADER_SIZE);
    private final BitSet received;
    private PageImage incoming;
    private int page = -1;
    private int version;
    private int contentFrom;
    private int contentPos;
    private boolean complete;
    private long trailerDigest;
    private String corruption;
    private long bytesWritten;

    ResumeSession(SimulatedDevice device, int pageSize, int pageCount) {
        super(device);
        this.pageSize = pageSize;
        this.pageCount = pageCount;
        this.received = new BitSet(pageCount);
        device.calls().resumeStarted();
    }

    @Override
    public void write(ByteBuffer src) throws VfioException {
        device.delayWrite();
        int bytes = src.remaining();
        writeLocked(src);
        device.pace(bytes);
    }

    private void writeLocked(ByteBuffer src) throws VfioException {
        synchronized (device) {
            String call = "write(data_fd)";
            checkUsable(call);
            FaultPlan faults = device.faults();
            if (faults.writeFailAt() >= 0 && bytesWritten + src.remaining() > faults.writeFailAt()) {
                throw device.error(call, faults.writeErrno(), "injected fault at stream offset "
                        + faults.writeFailAt());
            }
            device.calls().resumeWrote(src.duplicate());
            while (src.hasRemaining()) {
                if (complete) {
                    throw device.error(call, Errno.ENOMEM, "data past the end of the device state at stream offset "
                            + bytesWritten);
                }
                int before = src.position();
                if (header.hasRemaining()) {
                    SimStream.fill(header, src);
                    if (!header.hasRemaining()) {
                        checkHeader(call);
                    }
                } else if (recordHeader.hasRemaining()) {
                    SimStream.fill(recordHeader, src);
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

    private void checkHeader(String call) throws VfioException {
        header.flip();
        long magic = header.getLong();
        int ps = header.getInt();
        header.getInt();
        long pc = header.getLong();
        long seed = header.getLong();
        // Made before the checks, so the writes that may still come after a refused header find an image.
        incoming = new PageImage(pageSize, seed, new int[pageCount]);
        if (magic != SimStream.MAGIC) {
            fail(call, Errno.EFAULT, String.format("bad stream magic 0x%016x", magic));
        }
        if (ps != pageSize || pc != pageCount) {
            fail(call, Errno.EFAULT, "stream of a device with " + pc + " pages of " + ps + " bytes, this one has "
                    + pageCount + " of " + pageSize);
        }
    }

    private void startRecord(String call) throws VfioException {
        long index = recordHeader.getLong(0);
        long ver = recordHeader.getLong(8);
        if (index == SimStream.TRAILER_MARK) {
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
        contentFrom = incoming.contentOffset(index, ver);
        contentPos = 0;
    }

    private void checkContent(ByteBuffer src) {
        int n = Math.min(pageSize - contentPos, src.remaining());
        if (corruption == null) {
            int pos = src.position();
            int diff = src.slice(pos, n).mismatch(ByteBuffer.wrap(incoming.pattern(), contentFrom + contentPos, n));
            if (diff >= 0) {
                corruption = "page " + page + " version " + version + " differs at byte " + (contentPos + diff);
            }
        }
        src.position(src.position() + n);
        contentPos += n;
        if (contentPos == pageSize) {
            incoming.set(page, version);
            received.set(page);
            page = -1;
            recordHeader.clear();
        }
    }

    private void fail(String call, Errno errno, String detail) throws VfioException {
        if (corruption == null) {
            corruption = detail;
        }
        throw device.error(call, errno, detail);
    }

    /**
     * RESUMING -&gt; STOP: validates the whole stream.
     *
     * @return the state it carries, to become the device's
     */
    PageImage load(String call) throws VfioException {
        String problem = corruption;
        if (problem == null && !complete) {
            problem = "incomplete stream: " + bytesWritten + " bytes written, no end of state";
        }
        if (problem == null && received.cardinality() != pageCount) {
            problem = "only " + received.cardinality() + " of " + pageCount + " pages received";
        }
        if (problem == null && incoming.digest() != trailerDigest) {
            problem = "state digest mismatch";
        }
        if (problem != null) {
            throw device.error(call, Errno.EINVAL, "resume data rejected: " + problem);
        }
        return incoming;
    }

    @Override
    public int read(ByteBuffer dst) throws VfioException {
        throw refuse("read(data_fd)", Errno.EBADF, "a resuming session is write-only");
    }

    @Override
    public PrecopyInfo precopyInfo() throws VfioException {
        throw refuse("VFIO_MIG_GET_PRECOPY_INFO", Errno.ENOTTY, "not a saving session");
    }
}
