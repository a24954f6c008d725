package io.vfioproxy.device.sim;

import io.vfioproxy.device.PrecopyInfo;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import java.nio.ByteBuffer;
import java.util.BitSet;

/**
 * The saving session shared by PRE_COPY, PRE_COPY_P2P and STOP_COPY. It sweeps the pages once (the initial data),
 * then sends again each page the workload wrote after it was sent (the dirty data). In pre-copy a read that finds
 * nothing fails with ENOMSG (or returns 0, like mtty); in STOP_COPY the trailer follows the last page and then
 * read() returns 0 for good.
 */
final class SaveSession extends Session {

    private final PageImage image;
    private final int pageSize;
    private final int recordSize;
    private final ByteBuffer header;
    private final ByteBuffer recordHeader = ByteBuffer.allocate(SimStream.RECORD_HEADER_SIZE);
    private final BitSet dirty = new BitSet();
    private int sweepNext;
    private int page = -1;
    private boolean pageInitial;
    private int contentFrom;
    private int contentPos;
    private ByteBuffer trailer;
    private long bytesRead;

    SaveSession(SimulatedDevice device, PageImage image) {
        super(device);
        this.image = image;
        this.pageSize = image.pageSize();
        this.recordSize = SimStream.RECORD_HEADER_SIZE + pageSize;
        this.header = SimStream.header(image);
    }

    /** The workload wrote {@code p}: sent already (or being sent), it goes again. */
    void pageDirtied(int p) {
        if (p < sweepNext || p == page) {
            dirty.set(p);
        }
    }

    private long recordRemaining() {
        return page < 0 ? 0 : recordHeader.remaining() + (pageSize - contentPos);
    }

    long initialBytes() {
        return header.remaining() + (long) (image.pageCount() - sweepNext) * recordSize
                + (pageInitial ? recordRemaining() : 0);
    }

    long dirtyBytes() {
        return (long) dirty.cardinality() * recordSize + (pageInitial ? 0 : recordRemaining());
    }

    /** What stop-copy would still send: MIG_DATA_SIZE while this session is open. */
    long remaining() {
        return initialBytes() + dirtyBytes() + (trailer == null ? SimStream.TRAILER_SIZE : trailer.remaining());
    }

    @Override
    public int read(ByteBuffer dst) throws VfioException {
        int n = readLocked(dst);
        device.pace(n);
        return n;
    }

    private int readLocked(ByteBuffer dst) throws VfioException {
        synchronized (device) {
            String call = "read(data_fd)";
            device.calls().read();
            checkUsable(call);
            device.catchUp();
            FaultPlan faults = device.faults();
            int limit = dst.remaining();
            if (faults.readFailAt() >= 0) {
                long allowed = faults.readFailAt() - bytesRead;
                if (allowed <= 0 && limit > 0) {
                    throw device.error(call, faults.readErrno(), "injected fault at stream offset " + bytesRead);
                }
                limit = (int) Math.min(limit, allowed);
            }
            boolean stopCopy = device.stateLocked() == DeviceState.STOP_COPY;
            int start = dst.position();
            int end = start + limit;
            while (dst.position() < end) {
                if (header.hasRemaining()) {
                    SimStream.put(header, dst, end);
                } else if (page >= 0) {
                    emitRecord(dst, end);
                } else if (trailer != null) {
                    if (!trailer.hasRemaining()) {
                        break;
                    }
                    SimStream.put(trailer, dst, end);
                } else if (!nextRecord()) {
                    if (!stopCopy) {
                        break;
                    }
                    trailer = SimStream.trailer(image.digest());
                }
            }
            int n = dst.position() - start;
            bytesRead += n;
            if (n == 0 && limit > 0 && !stopCopy && !device.zeroReadWhenDrained()) {
                throw device.error(call, Errno.ENOMSG, "no pre-copy data for now");
            }
            return n;
        }
    }

    private boolean nextRecord() {
        int p;
        if (sweepNext < image.pageCount()) {
            p = sweepNext++;
            pageInitial = true;
        } else if ((p = dirty.nextSetBit(0)) >= 0) {
            dirty.clear(p);
            pageInitial = false;
        } else {
            return false;
        }
        page = p;
        int version = image.version(p);
        SimStream.recordHeader(recordHeader, p, version);
        contentFrom = image.contentOffset(p, version);
        contentPos = 0;
        return true;
    }

    private void emitRecord(ByteBuffer dst, int end) {
        if (recordHeader.hasRemaining()) {
            SimStream.put(recordHeader, dst, end);
            return;
        }
        int n = Math.min(pageSize - contentPos, end - dst.position());
        dst.put(image.pattern(), contentFrom + contentPos, n);
        contentPos += n;
        if (contentPos == pageSize) {
            page = -1;
        }
    }

    @Override
    public void write(ByteBuffer src) throws VfioException {
        throw refuse("write(data_fd)", Errno.EBADF, "a saving session is read-only");
    }

    @Override
    public PrecopyInfo precopyInfo() throws VfioException {
        synchronized (device) {
            String call = "VFIO_MIG_GET_PRECOPY_INFO";
            device.calls().askedPrecopyInfo();
            checkUsable(call);
            device.catchUp();
            DeviceState state = device.stateLocked();
            if (state != DeviceState.PRE_COPY && state != DeviceState.PRE_COPY_P2P) {
                throw device.error(call, Errno.EINVAL, "only valid in PRE_COPY and PRE_COPY_P2P");
            }
            return new PrecopyInfo(initialBytes(), dirtyBytes());
        }
    }
}
