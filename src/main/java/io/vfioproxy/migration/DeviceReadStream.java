package io.vfioproxy.migration;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
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
import io.vfioproxy.stream.DataFrame;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.uapi.Errno;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;

/**
 * A device's open saving session as a Vert.x {@link ReadStream} of frames, for a pipe to a connection or file.
 *
 * <p>One read is in flight at most, on the device's worker thread, and only while there is demand: a paused
 * stream reads nothing, so the device is read only as fast as the connection takes frames. Each chunk is read
 * straight into a pooled direct buffer behind room for its headers; nothing is copied on the way to the socket.
 *
 * <p>Pre-copy (the device runs): a read that finds no data for now (ENOMSG, or 0 from drivers like mtty) ends an
 * iteration with END_OF_STATE, and the stream reads again after a short pause, as dirty data may come. When the
 * device reports its initial bytes all read, DEV_INIT_DATA_SENT follows the data, in order. {@link #hold()} stops
 * reading for the switchover; {@link #stopCopy()} goes on in STOP_COPY on the same fd until read() returns 0,
 * the end of the stream.
 */
final class DeviceReadStream implements ReadStream<DataFrame> {

    private enum Mode { PRECOPY, HOLD, STOPCOPY }

    /**
     * With no pre-copy data for this long, an empty iteration (END_OF_STATE alone) goes out, as QEMU's iterate
     * does: the destination sees the source alive while the device is idle or a switchover is held.
     */
    static final long IDLE_ITERATION_NANOS = 1_000_000_000L;

    /** What one read on the device's thread found. */
    private record Chunk(DataFrame frame, boolean drained, PrecopyInfo info, long stopCopySize) {
    }

    private final Vertx vertx;
    private final DeviceHandle device;
    private final int channel;
    private final int chunkSize;
    private final ByteBufAllocator allocator;
    private final long pollMillis;
    private final ArrayDeque<DataFrame> pending = new ArrayDeque<>();
    private Mode mode;
    private Handler<DataFrame> handler;
    private Handler<Void> endHandler;
    private Handler<Throwable> exceptionHandler;
    private long demand = Long.MAX_VALUE;
    private boolean reading;
    private boolean eof;
    private boolean endSignalled;
    private boolean closed;
    private long retryTimer = -1;
    private Promise<Void> holding;
    private long precopyBytes;
    private long stopCopyBytes;
    private long chunks;
    private long iterations;
    private boolean initialSent;
    private boolean sentSinceMarker;
    private long lastMarkerNanos = System.nanoTime();
    private PrecopyInfo lastInfo;
    private long lastStopCopySize = -1;

    /**
     * @param precopy the session is a pre-copy one (the device is in PRE_COPY); else it is in STOP_COPY
     */
    DeviceReadStream(Vertx vertx, DeviceHandle device, int channel, int chunkSize, ByteBufAllocator allocator,
            boolean precopy, long pollMillis) {
        this.vertx = vertx;
        this.device = device;
        this.channel = channel;
        this.chunkSize = chunkSize;
        this.allocator = allocator;
        this.mode = precopy ? Mode.PRECOPY : Mode.STOPCOPY;
        this.pollMillis = pollMillis;
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

    /** Pre-copy iterations ended so far (END_OF_STATE or DEV_INIT_DATA_SENT). */
    long iterations() {
        return iterations;
    }

    /** True once the device reported its initial pre-copy bytes all read. */
    boolean initialDataSent() {
        return initialSent;
    }

    /** The latest VFIO_MIG_GET_PRECOPY_INFO, or null before the first pre-copy read. */
    PrecopyInfo lastInfo() {
        return lastInfo;
    }

    /** The latest MIG_DATA_SIZE read during pre-copy: what stop-copy is expected to send; -1 before. */
    long lastStopCopySize() {
        return lastStopCopySize;
    }

    /** Stops reading for the switchover; completes when no read is in flight. */
    Future<Void> hold() {
        cancelRetry();
        if (!reading) {
            mode = Mode.HOLD;
            return Future.succeededFuture();
        }
        holding = Promise.promise();
        return holding.future();
    }

    /** The device is in STOP_COPY now: read the rest of its stream, to the end. */
    void stopCopy() {
        mode = Mode.STOPCOPY;
        readIfWanted();
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
        demand = 0;
        return this;
    }

    @Override
    public ReadStream<DataFrame> resume() {
        return fetch(Long.MAX_VALUE);
    }

    @Override
    public ReadStream<DataFrame> fetch(long amount) {
        demand = Long.MAX_VALUE - demand > amount ? demand + amount : Long.MAX_VALUE;
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
        closed = true;
        cancelRetry();
        pending.forEach(DataFrame::release);
        pending.clear();
    }

    private void cancelRetry() {
        if (retryTimer >= 0) {
            vertx.cancelTimer(retryTimer);
            retryTimer = -1;
        }
    }

    private void readIfWanted() {
        if (reading || closed || eof || mode == Mode.HOLD || retryTimer >= 0 || !pending.isEmpty() || demand == 0
                || handler == null) {
            return;
        }
        reading = true;
        boolean precopy = mode == Mode.PRECOPY;
        device.submit(c -> readChunk(c, precopy)).onComplete(ar -> {
            reading = false;
            if (ar.failed()) {
                eof = true;
                if (exceptionHandler != null && !closed) {
                    exceptionHandler.handle(ar.cause());
                }
                return;
            }
            Chunk chunk = ar.result();
            if (closed) {
                if (chunk.frame() != null) {
                    chunk.frame().release();
                }
                return;
            }
            received(chunk, precopy);
            if (holding != null) {
                mode = Mode.HOLD;
                Promise<Void> h = holding;
                holding = null;
                h.complete();
            }
            deliverPending();
            if (chunk.drained() && mode == Mode.PRECOPY) {
                retryTimer = vertx.setTimer(pollMillis, id -> {
                    retryTimer = -1;
                    readIfWanted();
                });
            } else {
                readIfWanted();
            }
        });
    }

    private void received(Chunk chunk, boolean precopy) {
        DataFrame frame = chunk.frame();
        if (frame != null) {
            if (precopy) {
                precopyBytes += frame.chunkLength();
            } else {
                stopCopyBytes += frame.chunkLength();
            }
            chunks++;
            pending.add(frame);
            sentSinceMarker = true;
        }
        if (!precopy) {
            eof = frame == null;
            return;
        }
        lastInfo = chunk.info();
        lastStopCopySize = chunk.stopCopySize();
        if (!initialSent && lastInfo.initialBytes() == 0) {
            // QEMU sends DEV_INIT_DATA_SENT in place of the iteration's END_OF_STATE.
            initialSent = true;
            pending.add(DataFrame.marker(channel, VfioTag.DEV_INIT_DATA_SENT));
            sentSinceMarker = false;
            iterations++;
        } else if (chunk.drained() && (sentSinceMarker || System.nanoTime() - lastMarkerNanos >= IDLE_ITERATION_NANOS)) {
            pending.add(DataFrame.marker(channel, VfioTag.END_OF_STATE));
            if (sentSinceMarker) {
                iterations++;
            }
            sentSinceMarker = false;
            lastMarkerNanos = System.nanoTime();
        }
    }

    private void deliverPending() {
        while (!pending.isEmpty() && demand > 0) {
            DataFrame frame = pending.poll();
            if (demand != Long.MAX_VALUE) {
                demand--;
            }
            if (handler == null) {
                frame.release();
            } else {
                handler.handle(frame);
            }
        }
        if (eof && pending.isEmpty() && !endSignalled && !closed) {
            endSignalled = true;
            if (endHandler != null) {
                endHandler.handle(null);
            }
        }
    }

    /** On the device's worker thread: one chunk (or none, at the end or when pre-copy data ran dry). */
    private Chunk readChunk(DeviceController c, boolean precopy) throws VfioException {
        DataChannel data = c.channel().orElseThrow(() -> new VfioException(c.name(), "read(data_fd)", c.state(),
                Errno.EBADF, "no data session is open"));
        int capacity = Frames.DATA_OFFSET + chunkSize;
        ByteBuf buf = allocator.directBuffer(capacity, capacity);
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
            PrecopyInfo info = precopy ? data.precopyInfo() : null;
            long size = precopy ? c.device().stopCopySize() : -1;
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
}
