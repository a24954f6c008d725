package io.vfioproxy.migration;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.vertx.core.Handler;
import io.vertx.core.streams.ReadStream;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceController;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.stream.DataFrame;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.uapi.Errno;
import java.nio.ByteBuffer;

/**
 * The open saving session of a device as a Vert.x {@link ReadStream} of data frames, for a pipe to a connection.
 *
 * <p>One read is in flight at most, on the device's worker thread, and only while there is demand: a paused
 * stream reads nothing, so the device is read only as fast as the connection takes frames. Each chunk is read
 * straight into a pooled direct buffer behind room for its headers; nothing is copied on the way to the socket.
 * The stream ends when the device's read() returns 0 (the end of stop-copy data).
 */
final class DeviceReadStream implements ReadStream<DataFrame> {

    private final DeviceHandle device;
    private final int channel;
    private final int chunkSize;
    private final ByteBufAllocator allocator;
    private Handler<DataFrame> handler;
    private Handler<Void> endHandler;
    private Handler<Throwable> exceptionHandler;
    private long demand = Long.MAX_VALUE;
    private boolean reading;
    private boolean ended;
    private boolean closed;
    private DataFrame pending;
    private long bytesRead;
    private long chunks;

    DeviceReadStream(DeviceHandle device, int channel, int chunkSize, ByteBufAllocator allocator) {
        this.device = device;
        this.channel = channel;
        this.chunkSize = chunkSize;
        this.allocator = allocator;
    }

    long bytesRead() {
        return bytesRead;
    }

    long chunks() {
        return chunks;
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

    /** Stops reading and returns a frame not yet delivered to its pool. */
    void close() {
        closed = true;
        if (pending != null) {
            pending.release();
            pending = null;
        }
    }

    private void readIfWanted() {
        if (reading || ended || closed || pending != null || demand == 0 || handler == null) {
            return;
        }
        reading = true;
        device.submit(this::readChunk).onComplete(ar -> {
            reading = false;
            if (ar.failed()) {
                ended = true;
                if (exceptionHandler != null) {
                    exceptionHandler.handle(ar.cause());
                }
                return;
            }
            DataFrame frame = ar.result();
            if (closed) {
                if (frame != null) {
                    frame.release();
                }
                return;
            }
            if (frame == null) {
                ended = true;
                if (endHandler != null) {
                    endHandler.handle(null);
                }
                return;
            }
            bytesRead += frame.chunkLength();
            chunks++;
            pending = frame;
            deliverPending();
            readIfWanted();
        });
    }

    private void deliverPending() {
        if (pending == null || demand == 0) {
            return;
        }
        DataFrame frame = pending;
        pending = null;
        if (demand != Long.MAX_VALUE) {
            demand--;
        }
        if (handler == null) {
            frame.release();
            return;
        }
        handler.handle(frame);
    }

    /** On the device's worker thread: one chunk, or null at the end of the stream. */
    private DataFrame readChunk(DeviceController c) throws VfioException {
        DataChannel data = c.channel().orElseThrow(() -> new VfioException(c.name(), "read(data_fd)", c.state(),
                Errno.EBADF, "no data session is open"));
        int capacity = Frames.DATA_OFFSET + chunkSize;
        ByteBuf buf = allocator.directBuffer(capacity, capacity);
        try {
            ByteBuffer view = buf.nioBuffer(0, capacity);
            view.position(Frames.DATA_OFFSET);
            while (view.hasRemaining()) {
                if (data.read(view) == 0) {
                    break;
                }
            }
            int length = view.position() - Frames.DATA_OFFSET;
            if (length == 0) {
                buf.release();
                return null;
            }
            int crc = Frames.prepareData(view, length);
            buf.writerIndex(Frames.DATA_OFFSET + length);
            return new DataFrame(channel, buf, view, length, crc);
        } catch (VfioException | RuntimeException e) {
            buf.release();
            throw e;
        }
    }
}
