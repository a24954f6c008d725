package io.vfioproxy.stream;

import io.netty.buffer.ByteBuf;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.vertx.VertxInternals;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;

/**
 * Builds frames of the agent-to-agent protocol (docs/PROTOCOL.md). All integers are big-endian.
 *
 * <pre>
 * frame header, 16 bytes:
 *   0  u16 magic 0x564D ("VM")     2  u8 type     3  u8 channel
 *   4  u32 payload length          8  u32 CRC32C of the payload     12 u32 sequence number
 * </pre>
 */
public final class Frames {

    public static final int MAGIC = 0x564D;
    public static final int HEADER_SIZE = 16;
    /** A DEV_DATA_STATE record starts with be64 tag and be64 size. */
    public static final int DATA_RECORD_HEADER = 16;
    /** Where the chunk bytes start in a whole SECTION data frame. */
    public static final int DATA_OFFSET = HEADER_SIZE + DATA_RECORD_HEADER;
    /** 2: the section content is QEMU's to the byte; the agent's counts travel in SECTION_END. */
    public static final int PROTOCOL_VERSION = 2;

    private Frames() {
    }

    /** Writes a frame header at {@code at} of {@code buf}. */
    public static void putHeader(ByteBuffer buf, int at, FrameType type, int channel, int length, int crc, int seq) {
        buf.putShort(at, (short) MAGIC);
        buf.put(at + 2, (byte) type.code());
        buf.put(at + 3, (byte) channel);
        buf.putInt(at + 4, length);
        buf.putInt(at + 8, crc);
        buf.putInt(at + 12, seq);
    }

    static int crc(byte[] payload) {
        CRC32C crc = new CRC32C();
        crc.update(payload);
        return (int) crc.getValue();
    }

    private static Buffer frame(FrameType type, int channel, byte[] payload, int seq) {
        ByteBuffer out = ByteBuffer.allocate(HEADER_SIZE + payload.length);
        putHeader(out, 0, type, channel, payload.length, crc(payload), seq);
        out.put(HEADER_SIZE, payload);
        return Buffer.buffer(out.array());
    }

    /** A control frame carrying {@code body} as UTF-8 JSON. */
    public static Buffer control(FrameType type, int channel, JsonObject body, int seq) {
        if (!type.isControl()) {
            throw new IllegalArgumentException(type + " is not a control frame");
        }
        return frame(type, channel, body.encode().getBytes(StandardCharsets.UTF_8), seq);
    }

    /** A SECTION frame with a bare tag: END_OF_STATE, DEV_SETUP_STATE or DEV_INIT_DATA_SENT. */
    public static Buffer marker(int channel, VfioTag tag, int seq) {
        if (tag == VfioTag.DEV_DATA_STATE || tag == VfioTag.DEV_CONFIG_STATE) {
            throw new IllegalArgumentException(tag + " carries data");
        }
        return frame(FrameType.SECTION, channel, ByteBuffer.allocate(8).putLong(tag.value()).array(), seq);
    }

    /** A SECTION frame with DEV_CONFIG_STATE followed by the device's configuration blob. */
    public static Buffer config(int channel, byte[] blob, int seq) {
        ByteBuffer payload = ByteBuffer.allocate(8 + blob.length).putLong(VfioTag.DEV_CONFIG_STATE.value()).put(blob);
        return frame(FrameType.SECTION, channel, payload.array(), seq);
    }

    /**
     * Completes a data frame in place: {@code frame} holds {@code chunkLength} bytes of device data at
     * {@link #DATA_OFFSET}; this writes the DEV_DATA_STATE record header and returns the payload's CRC32C,
     * which {@link #sealHeader} puts into the frame header once the frame's sequence number is known.
     */
    public static int prepareData(ByteBuffer frame, int chunkLength) {
        frame.putLong(HEADER_SIZE, VfioTag.DEV_DATA_STATE.value());
        frame.putLong(HEADER_SIZE + 8, chunkLength);
        CRC32C crc = new CRC32C();
        crc.update(frame.slice(HEADER_SIZE, DATA_RECORD_HEADER + chunkLength));
        return (int) crc.getValue();
    }

    /** Writes the frame header of a data frame that {@link #prepareData} filled. */
    public static void sealHeader(ByteBuffer frame, int channel, int chunkLength, int crc, int seq) {
        putHeader(frame, 0, FrameType.SECTION, channel, DATA_RECORD_HEADER + chunkLength, crc, seq);
    }

    /** A Vert.x buffer over the Netty buffer, without copying. */
    public static Buffer wrap(ByteBuf buf) {
        return VertxInternals.wrap(buf);
    }

    /** A NIO view of part of a Vert.x buffer, without copying. */
    public static ByteBuffer nio(Buffer buf, int from, int length) {
        return VertxInternals.nio(buf, from, length);
    }
}
