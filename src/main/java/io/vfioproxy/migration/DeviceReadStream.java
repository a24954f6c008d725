package io.vfioproxy.migration;

import io.netty.buffer.ByteBuf;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.streams.ReadStream;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceController;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.PrecopyInfo;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.stream.ChunkPool;
import io.vfioproxy.stream.DataFrame;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.uapi.Errno;
import io.vfioproxy.util.Demand;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * A device's open saving session as a Vert.x {@link ReadStream} of frames, for a pipe to a connection or file.
 *
 * <p>Reads run on the device's worker thread only while there is demand, one at a time in pre-copy and
 * {@value #STOP_COPY_READS_IN_FLIGHT} queued in stop-copy: a paused stream reads nothing, so the device is read only as
 * fast as the connection takes frames (vert.x's AsyncFileImpl is the model). Each chunk is read straight into a direct buffer of the stream's own {@link ChunkPool}, behind room for its
 * headers; nothing is copied on the way to the socket, and the buffer is read into again once the socket wrote it.
 *
 * <p>Pre-copy (the device runs): a read that finds no data for now (ENOMSG, or 0 from drivers like mtty) ends an
 * iteration with END_OF_STATE, and the stream reads again after a pause that grows while the device stays idle.
 * What the device has left to send is counted down locally from its last answer, as QEMU does
 * (vfio_update_estimated_pending_data): VFIO_MIG_GET_PRECOPY_INFO and MIG_DATA_SIZE, each a firmware command under
 * the device's lock on drivers like mlx5, are asked once at the start and then only when an iteration ends, at most
 * every {@value #QUERY_INTERVAL_NANOS} ns. {@link #hold()} stops reading for the switchover and closes the iteration
 * under way; {@link #stopCopy()} goes on in STOP_COPY on the same fd until read() returns 0, the end of the stream.
 */
final class DeviceReadStream implements ReadStream<DataFrame> {

    /** Where the stream is. Only {@link #inFlight} says, besides, whether reads run on the device's thread. */
    private enum State {
        /** Reading pre-copy data while there is demand. */
        PRECOPY,
        /** Pre-copy data ran dry: a timer reads again. */
        PRECOPY_WAIT,
        /** {@link #hold()} was asked while a read was in flight; held once it returns. */
        HOLDING,
        /** Pre-copy reads stopped for the switchover. */
        HELD,
        /** Reading the stop-copy data to the end. */
        STOP_COPY,
        /** read() returned 0 in stop-copy: the end follows the frames still pending. */
        END,
        /** The end was signalled. */
        DONE,
        /** A read failed; the exception handler was told. */
        FAILED,
        /** Closed by its owner: nothing more is read or delivered. */
        CLOSED
    }

    /**
     * With no pre-copy data for this long, an empty iteration (END_OF_STATE alone) goes out, as QEMU's iterate does:
     * the destination sees the source alive while the device is idle or a switchover is held.
     */
    static final long IDLE_ITERATION_NANOS = 1_000_000_000L;
    /** The device is asked for its pre-copy figures at most this often. */
    static final long QUERY_INTERVAL_NANOS = 100_000_000L;
    /** The first pause after pre-copy data ran dry; it doubles while the device stays idle. */
    static final long FIRST_POLL_MILLIS = 5;
    /** The longest pause between reads of an idle device. */
    static final long MAX_POLL_MILLIS = 100;
    /**
     * Reads queued on the device's thread at once in stop-copy, where the stream only runs on to its end: the next
     * read starts as the last one returns, not after a round trip through the event loop. Pre-copy reads one at a
     * time, as each answer decides what the next does.
     */
    static final int STOP_COPY_READS_IN_FLIGHT = 2;
    /**
     * Chunk buffers kept for reuse: what the connection's write queue holds in flight (4 MiB by default, in 1 MiB
     * chunks), the one pending and the one being read.
     */
    static final int POOLED_CHUNKS = 8;

    /**
     * What one read on the device's thread found.
     *
     * @param info the device's answer to VFIO_MIG_GET_PRECOPY_INFO after the read, or null when it was not asked
     * @param stopCopySize MIG_DATA_SIZE after the read, or -1 when not asked or the device cannot tell
     */
    private record Chunk(DataFrame frame, boolean drained, PrecopyInfo info, long stopCopySize) {
    }

    private final Vertx vertx;
    private final DeviceHandle device;
    private final int channel;
    private final ChunkPool pool;
    private final ArrayDeque<DataFrame> pending = new ArrayDeque<>();
    /** Reads done on the device's thread, in their order, not yet taken on the event loop. */
    private final ConcurrentLinkedQueue<Arrival> arrivals = new ConcurrentLinkedQueue<>();
    private final PrecopyIterations iterations;
    private final Demand demand = new Demand();
    private State state;
    /** Reads submitted to the device's thread and not yet arrived. */
    private int inFlight;
    private Handler<DataFrame> handler;
    private Handler<Void> endHandler;
    private Handler<Throwable> exceptionHandler;
    private long retryTimer = -1;
    private long pollMillis = FIRST_POLL_MILLIS;
    private Promise<Void> holding;
    private long precopyBytes;
    private long stopCopyBytes;
    private long chunks;

    /**
     * @param precopy the session is a pre-copy one (the device is in PRE_COPY); else it is in STOP_COPY
     * @param switchoverAck the peer acknowledges the initial data: the iteration that sends its last byte ends with
     *        DEV_INIT_DATA_SENT
     */
    DeviceReadStream(Vertx vertx, DeviceHandle device, int channel, int chunkSize, boolean precopy,
            boolean switchoverAck) {
        this.vertx = vertx;
        this.device = device;
        this.channel = channel;
        this.pool = new ChunkPool(Frames.DATA_OFFSET + chunkSize, POOLED_CHUNKS);
        this.state = precopy ? State.PRECOPY : State.STOP_COPY;
        this.iterations = new PrecopyIterations(channel, switchoverAck);
    }

    /** Device data bytes read so far, both phases. */
    long bytesRead() {
        return precopyBytes + stopCopyBytes;
    }

    long precopyBytes() {
        return precopyBytes;
    }

    long stopCopyBytes() {
        return stopCopyBytes;
    }

    long chunks() {
        return chunks;
    }

    /** Pre-copy iterations ended so far. */
    long iterations() {
        return iterations.count();
    }

    /** True once the initial pre-copy data is all read, by the device's figures counted down. */
    boolean initialDataSent() {
        return iterations.initialDataSent();
    }

    /**
     * What stop-copy is expected to send: the larger of MIG_DATA_SIZE as last asked and the pre-copy data still
     * pending, or {@code unknown} where the device never answered either.
     */
    long remainingEstimate(long unknown) {
        return iterations.remaining(unknown);
    }

    /** Stops reading for the switchover; completes when no read is in flight and the iteration is closed. */
    Future<Void> hold() {
        cancelRetry();
        if (state != State.PRECOPY && state != State.PRECOPY_WAIT) {
            return Future.succeededFuture();
        }
        if (inFlight == 0) {
            held();
            return Future.succeededFuture();
        }
        state = State.HOLDING;
        holding = Promise.promise();
        return holding.future();
    }

    private void held() {
        state = State.HELD;
        // QEMU closes every iteration with END_OF_STATE, so the stop-copy data never runs on from pre-copy data.
        DataFrame marker = iterations.close();
        if (marker != null) {
            pending.add(marker);
            deliverPending();
        }
    }

    /** The device is in STOP_COPY now: read the rest of its stream, to the end. */
    void stopCopy() {
        if (state == State.HELD || state == State.PRECOPY || state == State.PRECOPY_WAIT) {
            cancelRetry();
            state = State.STOP_COPY;
            readIfWanted();
        }
    }

    @Override
    public ReadStream<DataFrame> exceptionHandler(Handler<Throwable> handler) {
        this.exceptionHandler = handler;
        return this;
    }

    @Override
    public ReadStream<DataFrame> handler(Handler<DataFrame> handler) {
        this.handler = handler;
        readIfWanted();
        return this;
    }

    @Override
    public ReadStream<DataFrame> pause() {
        demand.pause();
        return this;
    }

    @Override
    public ReadStream<DataFrame> resume() {
        return fetch(Long.MAX_VALUE);
    }

    @Override
    public ReadStream<DataFrame> fetch(long amount) {
        demand.fetch(amount);
        deliverPending();
        readIfWanted();
        return this;
    }

    @Override
    public ReadStream<DataFrame> endHandler(Handler<Void> endHandler) {
        this.endHandler = endHandler;
        return this;
    }

    /** Stops reading and returns every frame not yet delivered to its pool. */
    void close() {
        state = State.CLOSED;
        cancelRetry();
        pending.forEach(DataFrame::release);
        pending.clear();
        pool.close();
    }

    private void cancelRetry() {
        if (retryTimer >= 0) {
            vertx.cancelTimer(retryTimer);
            retryTimer = -1;
            if (state == State.PRECOPY_WAIT) {
                state = State.PRECOPY;
            }
        }
    }

    private void readIfWanted() {
        int reads = state == State.STOP_COPY ? STOP_COPY_READS_IN_FLIGHT : 1;
        while (inFlight < reads && (state == State.PRECOPY || state == State.STOP_COPY) && pending.isEmpty()
                && demand.wanted() && handler != null) {
            submitRead();
        }
    }

    private void submitRead() {
        inFlight++;
        boolean precopy = state == State.PRECOPY;
        long now = System.nanoTime();
        boolean askNow = precopy && iterations.mustAsk();
        boolean askIfDrained = precopy && iterations.mayAsk(now);
        device.submit(c -> {
            // Queued here, on the device's thread, in the order the reads ran: the futures' handlers may run in
            // another order (one that completed before its handler was set runs at once, ahead of one queued).
            try {
                arrivals.add(new Arrival(readChunk(c, precopy, askNow, askIfDrained), null, precopy, now));
            } catch (VfioException | RuntimeException e) {
                arrivals.add(new Arrival(null, e, precopy, now));
            }
            return null;
        }).onComplete(ar -> {
            if (ar.failed()) {
                // The read never ran (the device is closed): nothing of it is queued.
                inFlight--;
                failed(ar.cause());
            }
            takeArrivals();
        });
    }

    /** What one read on the device's thread found, or how it failed. */
    private record Arrival(Chunk chunk, Throwable failure, boolean precopy, long askedAt) {
    }

    private void takeArrivals() {
        for (Arrival a; (a = arrivals.poll()) != null; ) {
            inFlight--;
            try {
                if (a.failure() != null) {
                    failed(a.failure());
                } else {
                    arrived(a.chunk(), a.precopy(), a.askedAt());
                }
            } catch (RuntimeException e) {
                failed(e);
            }
        }
    }

    private void arrived(Chunk chunk, boolean precopy, long askedAt) {
        // A read that was queued behind the one that ended the stream (or failed it) finds nothing to add.
        if (state == State.CLOSED || state == State.FAILED || state == State.END || state == State.DONE) {
            if (chunk.frame() != null) {
                chunk.frame().release();
            }
            return;
        }
        received(chunk, precopy, askedAt);
        if (state == State.HOLDING) {
            held();
            Promise<Void> h = holding;
            holding = null;
            h.complete();
        }
        deliverPending();
        if (chunk.drained() && state == State.PRECOPY) {
            state = State.PRECOPY_WAIT;
            retryTimer = vertx.setTimer(pollMillis, id -> {
                retryTimer = -1;
                if (state == State.PRECOPY_WAIT) {
                    state = State.PRECOPY;
                    readIfWanted();
                }
            });
            pollMillis = Math.min(MAX_POLL_MILLIS, pollMillis * 2);
        } else {
            pollMillis = FIRST_POLL_MILLIS;
            readIfWanted();
        }
    }

    private void failed(Throwable cause) {
        if (state == State.CLOSED || state == State.FAILED) {
            return;
        }
        state = State.FAILED;
        if (holding != null) {
            holding.tryFail(cause);
            holding = null;
        }
        if (exceptionHandler != null) {
            exceptionHandler.handle(cause);
        }
    }

    private void received(Chunk chunk, boolean precopy, long askedAt) {
        DataFrame frame = chunk.frame();
        if (frame != null) {
            if (precopy) {
                precopyBytes += frame.chunkLength();
            } else {
                stopCopyBytes += frame.chunkLength();
            }
            chunks++;
            pending.add(frame);
        }
        if (!precopy) {
            if (frame == null) {
                state = State.END;
            }
            return;
        }
        DataFrame marker = iterations.afterRead(frame == null ? 0 : frame.chunkLength(), chunk.drained(),
                chunk.info(), chunk.stopCopySize(), askedAt);
        if (marker != null) {
            pending.add(marker);
        }
    }

    private void deliverPending() {
        while (!pending.isEmpty() && demand.wanted() && state != State.CLOSED) {
            DataFrame frame = pending.poll();
            demand.take();
            if (handler == null) {
                frame.release();
            } else {
                handler.handle(frame);
            }
        }
        if (state == State.END && pending.isEmpty()) {
            state = State.DONE;
            // Nothing more is read: the buffers still on their way to the socket are freed as it writes them.
            pool.close();
            if (endHandler != null) {
                endHandler.handle(null);
            }
        }
    }

    /**
     * On the device's worker thread: one chunk (or none, at the end or when pre-copy data ran dry), and the device's
     * pre-copy figures when {@code askNow}, or when the data ran dry and {@code askIfDrained}.
     */
    private Chunk readChunk(DeviceController c, boolean precopy, boolean askNow, boolean askIfDrained)
            throws VfioException {
        DataChannel data = c.channel().orElseThrow(() -> new VfioException(c.name(), "read(data_fd)", c.state(),
                Errno.EBADF, "no data session is open"));
        int capacity = pool.capacity();
        ByteBuf buf = pool.take();
        try {
            ByteBuffer view = buf.nioBuffer(0, capacity);
            view.position(Frames.DATA_OFFSET);
            boolean drained = false;
            while (view.hasRemaining()) {
                int n;
                try {
                    n = data.read(view);
                } catch (VfioException e) {
                    if (precopy && e.is(Errno.ENOMSG)) {
                        drained = true;
                        break;
                    }
                    throw e;
                }
                if (n == 0) {
                    drained = precopy;
                    break;
                }
            }
            PrecopyInfo info = null;
            long size = -1;
            if (askNow || (drained && askIfDrained)) {
                info = data.precopyInfo();
                try {
                    size = c.device().stopCopySize();
                } catch (VfioException e) {
                    size = -1;
                }
            }
            int length = view.position() - Frames.DATA_OFFSET;
            if (length == 0) {
                buf.release();
                return new Chunk(null, drained, info, size);
            }
            int crc = Frames.prepareData(view, length);
            buf.writerIndex(Frames.DATA_OFFSET + length);
            return new Chunk(new DataFrame(channel, buf, view, length, crc), drained, info, size);
        } catch (VfioException | RuntimeException e) {
            buf.release();
            throw e;
        }
    }

    /**
     * Pre-copy's iterations and the device's figures. An iteration ends when the data runs dry (END_OF_STATE after
     * data, or alone after {@link #IDLE_ITERATION_NANOS} with none), or at the switchover; with a switchover ack,
     * the one that sends the last initial byte ends with DEV_INIT_DATA_SENT in its place, as QEMU does. The figures
     * are the device's last answer counted down by what was read since: initial bytes first, then dirty bytes.
     */
    private static final class PrecopyIterations {
        private final int channel;
        private final boolean switchoverAck;
        private long count;
        private boolean initialSent;
        private boolean sentSinceMarker;
        private long lastMarkerNanos = System.nanoTime();
        private boolean answered;
        private long askedNanos;
        private long initial;
        private long dirty;
        private long stopCopySize = -1;

        PrecopyIterations(int channel, boolean switchoverAck) {
            this.channel = channel;
            this.switchoverAck = switchoverAck;
        }

        /** The device has not answered yet: ask with the next read. */
        boolean mustAsk() {
            return !answered;
        }

        /** An iteration that ends now may ask again. */
        boolean mayAsk(long now) {
            return now - askedNanos >= QUERY_INTERVAL_NANOS;
        }

        /** After one pre-copy read of {@code n} bytes: the marker to send after its data, or null. */
        DataFrame afterRead(long n, boolean drained, PrecopyInfo info, long size, long askedAt) {
            sentSinceMarker |= n > 0;
            if (info != null) {
                // Asked after the read: the answer already counts it.
                answered = true;
                askedNanos = askedAt;
                initial = info.initialBytes();
                dirty = info.dirtyBytes();
                stopCopySize = size;
            } else {
                long fromInitial = Math.min(initial, n);
                initial -= fromInitial;
                dirty -= Math.min(dirty, n - fromInitial);
            }
            if (drained) {
                // Nothing to send for now: nothing is pending, whatever the last answer said.
                initial = 0;
                dirty = 0;
            }
            if (!initialSent && answered && initial == 0) {
                initialSent = true;
                if (switchoverAck) {
                    return marked(VfioTag.DEV_INIT_DATA_SENT, true);
                }
            }
            if (drained && (sentSinceMarker || System.nanoTime() - lastMarkerNanos >= IDLE_ITERATION_NANOS)) {
                return marked(VfioTag.END_OF_STATE, sentSinceMarker);
            }
            return null;
        }

        /** The switchover interrupts the iteration: END_OF_STATE if it sent data since its last marker. */
        DataFrame close() {
            return sentSinceMarker ? marked(VfioTag.END_OF_STATE, true) : null;
        }

        private DataFrame marked(VfioTag tag, boolean endsAnIteration) {
            if (endsAnIteration) {
                count++;
            }
            sentSinceMarker = false;
            lastMarkerNanos = System.nanoTime();
            return DataFrame.marker(channel, tag);
        }

        long count() {
            return count;
        }

        boolean initialDataSent() {
            return initialSent;
        }

        long remaining(long unknown) {
            if (!answered) {
                return unknown;
            }
            return Math.max(stopCopySize >= 0 ? stopCopySize : unknown, initial + dirty);
        }
    }
}
