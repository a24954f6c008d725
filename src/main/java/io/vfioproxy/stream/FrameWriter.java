package io.vfioproxy.stream;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.Unpooled;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.core.streams.WriteStream;
import io.vfioproxy.vertx.VertxInternals;
import java.util.ArrayList;
import java.util.List;

/**
 * Writes frames to one connection, numbering them in the order they are sent. Runs on the connection's context.
 */
public final class FrameWriter {

    private final WriteStream<Buffer> out;
    private int seq;
    private long bytesQueued;
    private long bytesWritten;
    private long dataBytesWritten;
    private final List<Handler<Void>> waitingForDrain = new ArrayList<>();
    private long drains;

    public FrameWriter(WriteStream<Buffer> out) {
        this.out = out;
    }

    /** Bytes handed to the connection. */
    public long bytesQueued() {
        return bytesQueued;
    }

    /** Bytes the connection has written to the medium. */
    public long bytesWritten() {
        return bytesWritten;
    }

    /** Device data bytes (chunk bytes, without headers) written to the medium. */
    public long dataBytesWritten() {
        return dataBytesWritten;
    }

    private Future<Void> send(Buffer frame) {
        int n = frame.length();
        bytesQueued += n;
        return out.write(frame).onSuccess(v -> bytesWritten += n);
    }

    public Future<Void> control(FrameType type, int channel, JsonObject body) {
        return send(Frames.control(type, channel, body, seq++));
    }

    public Future<Void> marker(int channel, VfioTag tag) {
        return send(Frames.marker(channel, tag, seq++));
    }

    public Future<Void> config(int channel, byte[] blob) {
        return send(Frames.config(channel, blob, seq++));
    }

    /** Sends a data frame without copying it and releases its buffer once written (or failed). */
    public Future<Void> data(DataFrame frame) {
        frame.seal(seq++);
        int n = frame.frameLength();
        bytesQueued += n;
        return out.write(Frames.wrap(frame.buf())).andThen(ar -> {
            frame.release();
            if (ar.succeeded()) {
                bytesWritten += n;
                dataBytesWritten += frame.chunkLength();
            }
        });
    }

    /**
     * Sends {@code bytes} as one RELAY_DATA frame without copying them: the frame header and the bytes go out
     * together, and the bytes' memory is held until the connection wrote them (a retained slice, so the caller may
     * release its buffer at once).
     */
    public Future<Void> relayData(int channel, Buffer bytes) {
        int n = bytes.length();
        ByteBuf payload = VertxInternals.retainedSlice(bytes);
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        crc.update(payload.nioBuffer());
        // Direct, as the bytes are: a composite with one heap part is not direct, and Netty would copy it all into
        // a direct buffer to write it.
        ByteBuf header = ByteBufAllocator.DEFAULT.directBuffer(Frames.HEADER_SIZE, Frames.HEADER_SIZE);
        Frames.putHeader(header.nioBuffer(0, Frames.HEADER_SIZE), 0, FrameType.RELAY_DATA, channel, n,
                (int) crc.getValue(), seq++);
        header.writerIndex(Frames.HEADER_SIZE);
        ByteBuf frame = Unpooled.wrappedBuffer(header, payload);
        bytesQueued += Frames.HEADER_SIZE + n;
        return out.write(Frames.wrap(frame)).andThen(ar -> {
            frame.release();
            if (ar.succeeded()) {
                bytesWritten += Frames.HEADER_SIZE + n;
                dataBytesWritten += n;
            }
        });
    }

    /** Whether the connection's queue is full: a writer waits for {@link #drainHandler} then. */
    public boolean writeQueueFull() {
        return out.writeQueueFull();
    }

    /** Calls {@code handler} once the connection's queue drained. */
    public void drainHandler(Handler<Void> handler) {
        out.drainHandler(handler);
    }

    /**
     * One device's side of a pipe to the connection: writes data and marker frames in order, with the
     * connection's backpressure. Several sinks (one per device) share the connection: the socket has one drain
     * handler, so the writer calls every waiting sink's handler when it drains, in turn, so no device starves.
     */
    public WriteStream<DataFrame> dataSink() {
        return new WriteStream<>() {
            @Override
            public WriteStream<DataFrame> exceptionHandler(Handler<Throwable> handler) {
                return this;
            }

            @Override
            public Future<Void> write(DataFrame frame) {
                return frame.marker() != null ? marker(frame.channel(), frame.marker()) : data(frame);
            }

            @Override
            public Future<Void> end() {
                return Future.succeededFuture();
            }

            @Override
            public WriteStream<DataFrame> setWriteQueueMaxSize(int maxSize) {
                return this;
            }

            @Override
            public boolean writeQueueFull() {
                return out.writeQueueFull();
            }

            @Override
            public WriteStream<DataFrame> drainHandler(Handler<Void> handler) {
                if (handler != null) {
                    waitingForDrain.add(handler);
                    out.drainHandler(v -> drained());
                }
                return this;
            }
        };
    }

    private void drained() {
        List<Handler<Void>> waiting = new ArrayList<>(waitingForDrain);
        waitingForDrain.clear();
        // Start with a different sink each time, so the first resumed is not always the same device.
        int start = waiting.isEmpty() ? 0 : (int) (drains++ % waiting.size());
        for (int i = 0; i < waiting.size(); i++) {
            waiting.get((start + i) % waiting.size()).handle(null);
        }
    }
}
