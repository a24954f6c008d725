package io.vfioproxy.stream;

import io.netty.buffer.ByteBuf;
import java.nio.ByteBuffer;

/**
 * One SECTION data frame in a pooled direct buffer: room for the frame header, the DEV_DATA_STATE record header,
 * then the chunk the device read, in place. The header is sealed when the frame is sent; the buffer goes back
 * to the pool when the socket has written it.
 */
public final class DataFrame {

    private final int channel;
    private final ByteBuf buf;
    private final ByteBuffer view;
    private final int chunkLength;
    private final int crc;

    /**
     * @param view a NIO view of {@code buf} from index 0, with the chunk at {@link Frames#DATA_OFFSET}
     */
    public DataFrame(int channel, ByteBuf buf, ByteBuffer view, int chunkLength, int crc) {
        this.channel = channel;
        this.buf = buf;
        this.view = view;
        this.chunkLength = chunkLength;
        this.crc = crc;
    }

    public int channel() {
        return channel;
    }

    public int chunkLength() {
        return chunkLength;
    }

    /** Bytes on the wire: header, record header and chunk. */
    public int frameLength() {
        return Frames.DATA_OFFSET + chunkLength;
    }

    ByteBuf buf() {
        return buf;
    }

    void seal(int seq) {
        Frames.sealHeader(view, channel, chunkLength, crc, seq);
    }

    /** Returns the buffer to its pool. */
    public void release() {
        buf.release();
    }
}
