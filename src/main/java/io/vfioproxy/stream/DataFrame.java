package io.vfioproxy.stream;

import io.netty.buffer.ByteBuf;
import java.nio.ByteBuffer;

/**
 * One SECTION frame of a device's stream on its way to the connection: either device data in a pooled direct
 * buffer (room for the frame header and the DEV_DATA_STATE record header, then the chunk the device read, in
 * place), or a marker (END_OF_STATE, DEV_INIT_DATA_SENT) that must stay in order with the data around it.
 * The header is sealed when the frame is sent; the buffer goes back to its pool once the socket has written it.
 */
public final class DataFrame {

    private final int channel;
    private final ByteBuf buf;
    private final ByteBuffer view;
    private final int chunkLength;
    private final int crc;
    private final VfioTag marker;

    /**
     * @param view a NIO view of {@code buf} from index 0, with the chunk at {@link Frames#DATA_OFFSET}
     */
    public DataFrame(int channel, ByteBuf buf, ByteBuffer view, int chunkLength, int crc) {
        this.channel = channel;
        this.buf = buf;
        this.view = view;
        this.chunkLength = chunkLength;
        this.crc = crc;
        this.marker = null;
    }

    private DataFrame(int channel, VfioTag marker) {
        this.channel = channel;
        this.buf = null;
        this.view = null;
        this.chunkLength = 0;
        this.crc = 0;
        this.marker = marker;
    }

    /** A marker frame: END_OF_STATE, DEV_SETUP_STATE or DEV_INIT_DATA_SENT. */
    public static DataFrame marker(int channel, VfioTag tag) {
        return new DataFrame(channel, tag);
    }

    public int channel() {
        return channel;
    }

    /** The marker's tag, or null for a data frame. */
    public VfioTag marker() {
        return marker;
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

    /** Returns the buffer to its pool; a marker holds none. */
    public void release() {
        if (buf != null) {
            buf.release();
        }
    }
}
