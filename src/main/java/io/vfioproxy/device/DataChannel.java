package io.vfioproxy.device;

import java.nio.ByteBuffer;

/**
 * The migration data fd a state change returned: a saving session (PRE_COPY, PRE_COPY_P2P, STOP_COPY) is read,
 * a resuming session (RESUMING) is written. Calls block; they run on the device's worker context only.
 */
public interface DataChannel extends AutoCloseable {

    /**
     * Reads up to {@code dst.remaining()} bytes of the device's stream into {@code dst} and advances its position.
     *
     * @return the number of bytes read; 0 at the permanent end of stream in STOP_COPY (some drivers, mtty among
     *         them, also return 0 in PRE_COPY when drained for now, which is not the end)
     * @throws VfioException ENOMSG in PRE_COPY at a temporary end of data; ENODEV after the session ended
     */
    int read(ByteBuffer dst) throws VfioException;

    /**
     * Writes all remaining bytes of {@code src} into a resuming session, in order, and advances its position.
     *
     * @throws VfioException on any error: a failed write may still let RESUMING -&gt; STOP succeed with garbage on
     *         some drivers, so callers treat every write error as fatal to the migration
     */
    void write(ByteBuffer src) throws VfioException;

    /** VFIO_MIG_GET_PRECOPY_INFO; EINVAL outside PRE_COPY and PRE_COPY_P2P. */
    PrecopyInfo precopyInfo() throws VfioException;

    /** Closes the fd; idempotent. The kernel session may have ended earlier: the fd is closed all the same. */
    @Override
    void close();
}
