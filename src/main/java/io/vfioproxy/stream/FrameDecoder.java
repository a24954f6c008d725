package io.vfioproxy.stream;

import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonObject;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;

/**
 * Parses the agent-to-agent protocol from a byte stream of any segmentation. Control frames and short section
 * records are collected (bounded by {@link Limits}); device data is handed on in slices of the input as it
 * arrives, never collected, and its CRC32C is checked when the frame ends.
 *
 * <p>Every violation throws {@link ProtocolException} with a message that names the frame and the problem.
 */
public final class FrameDecoder {

    /** What the decoder found. Called on the thread that feeds it. */
    public interface Listener {
        void onControl(FrameType type, int channel, JsonObject body);

        /** END_OF_STATE, DEV_SETUP_STATE or DEV_INIT_DATA_SENT. */
        void onMarker(int channel, VfioTag tag);

        /** DEV_CONFIG_STATE and its blob. */
        void onConfig(int channel, Buffer blob);

        /** A DEV_DATA_STATE record of {@code size} bytes begins. */
        void onDataStart(int channel, long size);

        /** The next bytes of the current data record: a slice of the input, not a copy. */
        void onData(int channel, Buffer piece);

        /** The data record ended and its CRC32C matched. */
        void onDataEnd(int channel);

        /**
         * The next bytes of a RELAY_DATA frame: a slice of the input, not a copy, not yet checked. A listener that
         * forwards them waits for {@link #onRelayDataEnd}.
         */
        default void onRelayData(int channel, Buffer piece) {
            throw new ProtocolException("unexpected RELAY_DATA frame");
        }

        /** The RELAY_DATA frame ended and its CRC32C matched: the pieces since the last end are good. */
        default void onRelayDataEnd(int channel) {
            throw new ProtocolException("unexpected RELAY_DATA frame");
        }
    }

    /** Control frames: HELLO, ACCEPT, LOADED, ABORT, ... */
    @FunctionalInterface
    public interface ControlHandler {
        void onControl(FrameType type, int channel, JsonObject body);
    }

    /** A listener for a peer that sends control frames only: a SECTION frame from it is a protocol error. */
    public static Listener controlOnly(ControlHandler control) {
        return new Listener() {
            @Override
            public void onControl(FrameType type, int channel, JsonObject body) {
                control.onControl(type, channel, body);
            }

            @Override
            public void onMarker(int channel, VfioTag tag) {
                unexpected();
            }

            @Override
            public void onConfig(int channel, Buffer blob) {
                unexpected();
            }

            @Override
            public void onDataStart(int channel, long size) {
                unexpected();
            }

            @Override
            public void onData(int channel, Buffer piece) {
                unexpected();
            }

            @Override
            public void onDataEnd(int channel) {
                unexpected();
            }

            private void unexpected() {
                throw new ProtocolException("unexpected SECTION frame from a peer that sends none");
            }
        };
    }

    private enum Phase { HEADER, COLLECT, RECORD, RAW }

    private final Limits limits;
    private final Listener listener;
    private final CRC32C crc = new CRC32C();
    private final ByteBuffer header = ByteBuffer.allocate(Frames.HEADER_SIZE);
    private final VfioRecordReader records = new VfioRecordReader();
    private Phase phase = Phase.HEADER;
    private FrameType type;
    private int channel;
    private int length;
    private int expectedCrc;
    private int expectedSeq;
    private int remaining;
    private Buffer collected;
    private long frames;
    /** Volatile: a migration's watchdog may read it from another event loop than the one that feeds. */
    private volatile long bytes;

    public FrameDecoder(Limits limits, Listener listener) {
        this.limits = limits;
        this.listener = listener;
    }

    /** Frames completely decoded so far. */
    public long frames() {
        return frames;
    }

    /** Bytes fed so far. */
    public long bytes() {
        return bytes;
    }

    /** True when the input stopped in the middle of a frame: a truncated stream if the connection ends now. */
    public boolean midFrame() {
        return phase != Phase.HEADER || header.position() > 0;
    }

    /** Where the decoder is, for error messages about a stream that ended. */
    public String position() {
        if (!midFrame()) {
            return "after frame " + (expectedSeq - 1);
        }
        if (phase == Phase.HEADER) {
            return "in the header of frame " + expectedSeq + " (" + header.position() + " of " + Frames.HEADER_SIZE
                    + " bytes)";
        }
        return "in frame " + expectedSeq + " (" + type + ", " + (length - remaining) + " of " + length + " bytes)";
    }

    /** Consumes {@code input}. */
    public void feed(Buffer input) {
        bytes += input.length();
        int pos = 0;
        int end = input.length();
        while (pos < end) {
            switch (phase) {
                case HEADER -> {
                    pos = fill(header, input, pos, end);
                    if (!header.hasRemaining()) {
                        startFrame();
                    }
                }
                case COLLECT -> {
                    int n = Math.min(remaining, end - pos);
                    collected.appendBuffer(input, pos, n);
                    checksum(input, pos, n);
                    pos += n;
                    remaining -= n;
                    if (remaining == 0) {
                        endCollected();
                    }
                }
                case RECORD -> {
                    int before = pos;
                    pos = records.step(input, pos, Math.min(end, pos + remaining));
                    checksum(input, before, pos - before);
                    remaining -= pos - before;
                    record(input, pos);
                }
                case RAW -> {
                    int n = Math.min(remaining, end - pos);
                    checksum(input, pos, n);
                    listener.onRelayData(channel, input.slice(pos, pos + n));
                    pos += n;
                    remaining -= n;
                    if (remaining == 0) {
                        endRaw();
                    }
                }
                default -> throw new IllegalStateException(phase.name());
            }
        }
    }

    private void endRaw() {
        verifyCrc();
        int ch = channel;
        nextFrame();
        listener.onRelayDataEnd(ch);
    }

    private static int fill(ByteBuffer into, Buffer input, int pos, int end) {
        int n = Math.min(into.remaining(), end - pos);
        for (int i = 0; i < n; i++) {
            into.put(input.getByte(pos + i));
        }
        return pos + n;
    }

    private void checksum(Buffer input, int pos, int n) {
        if (n > 0) {
            crc.update(Frames.nio(input, pos, n));
        }
    }

    private void startFrame() {
        int magic = header.getShort(0) & 0xffff;
        int code = header.get(2) & 0xff;
        channel = header.get(3) & 0xff;
        length = header.getInt(4);
        expectedCrc = header.getInt(8);
        int seq = header.getInt(12);
        if (magic != Frames.MAGIC) {
            throw new ProtocolException(String.format("frame %d: bad magic 0x%04x, expected 0x%04x: not a "
                    + "vfio-migration-proxy stream, or the stream lost its framing", expectedSeq, magic, Frames.MAGIC));
        }
        if (seq != expectedSeq) {
            throw new ProtocolException("frame " + expectedSeq + ": sequence number " + Integer.toUnsignedString(seq)
                    + " out of order");
        }
        type = FrameType.of(code);
        if (type == null) {
            throw new ProtocolException(String.format("frame %d: unknown frame type 0x%02x", seq, code));
        }
        int max = switch (type.payload()) {
            case JSON -> limits.maxControlPayload();
            case SECTION -> limits.maxSectionPayload();
            case RAW -> limits.maxChunk();
        };
        if (length < 0 || length > max) {
            throw new ProtocolException("frame " + seq + ": " + type + " payload length "
                    + Integer.toUnsignedString(length) + " exceeds the limit of " + max + " bytes");
        }
        crc.reset();
        remaining = length;
        if (type.payload() == FrameType.Payload.RAW) {
            if (length == 0) {
                throw new ProtocolException("frame " + seq + ": empty RELAY_DATA");
            }
            phase = Phase.RAW;
            return;
        }
        if (type.isControl()) {
            beginCollect(length);
        } else if (length < 8) {
            throw new ProtocolException("frame " + seq + ": SECTION payload of " + length
                    + " bytes is shorter than a tag");
        } else {
            phase = Phase.RECORD;
            records.restart();
        }
        if (remaining == 0) {
            endCollected();
        }
    }

    private void beginCollect(int n) {
        collected = Buffer.buffer(n);
        phase = Phase.COLLECT;
    }

    /** What the record reader reached in a SECTION frame, which holds exactly one record. */
    private void record(Buffer input, int pos) {
        switch (records.event()) {
            case NEED_MORE -> {
                if (remaining == 0) {
                    throw new ProtocolException("frame " + expectedSeq + ": " + (records.tag() == VfioTag.DEV_DATA_STATE
                            ? "DEV_DATA_STATE without a size" : "the SECTION payload ends inside a tag"));
                }
            }
            case TAG -> {
                VfioTag tag = records.tag();
                if (tag == null) {
                    throw new ProtocolException(String.format("frame %d: unknown VFIO tag 0x%016x", expectedSeq,
                            records.unknownTag()));
                }
                switch (tag) {
                    case DEV_DATA_STATE -> {
                        if (remaining < 8) {
                            throw new ProtocolException("frame " + expectedSeq + ": DEV_DATA_STATE without a size");
                        }
                    }
                    case DEV_CONFIG_STATE -> {
                        // The device's config follows the tag to the end of the frame.
                        if (remaining > limits.maxControlPayload()) {
                            throw new ProtocolException("frame " + expectedSeq + ": DEV_CONFIG_STATE of " + remaining
                                    + " bytes exceeds the limit of " + limits.maxControlPayload());
                        }
                        beginCollect(remaining);
                        if (remaining == 0) {
                            endCollected();
                        }
                    }
                    default -> {
                        if (remaining != 0) {
                            throw new ProtocolException("frame " + expectedSeq + ": " + tag + " carries " + remaining
                                    + " unexpected bytes");
                        }
                        verifyCrc();
                        listener.onMarker(channel, tag);
                        nextFrame();
                    }
                }
            }
            case DATA_START -> {
                if (records.dataSize() != remaining) {
                    throw new ProtocolException("frame " + expectedSeq + ": DEV_DATA_STATE size " + records.dataSize()
                            + " does not match the " + remaining + " bytes left in the frame");
                }
                listener.onDataStart(channel, records.dataSize());
                if (remaining == 0) {
                    verifyCrc();
                    listener.onDataEnd(channel);
                    nextFrame();
                }
            }
            case DATA -> listener.onData(channel, input.slice(records.dataFrom(), pos));
            case DATA_END -> {
                listener.onData(channel, input.slice(records.dataFrom(), pos));
                verifyCrc();
                listener.onDataEnd(channel);
                nextFrame();
            }
            default -> throw new IllegalStateException(records.event().name());
        }
    }

    private void endCollected() {
        verifyCrc();
        Buffer body = collected;
        FrameType t = type;
        int ch = channel;
        int seq = expectedSeq;
        nextFrame();
        if (t == FrameType.SECTION) {
            listener.onConfig(ch, body);
            return;
        }
        JsonObject json;
        try {
            json = new JsonObject(body.toString(StandardCharsets.UTF_8));
        } catch (DecodeException | ClassCastException e) {
            throw new ProtocolException("frame " + seq + ": " + t + " payload is not a JSON object");
        }
        listener.onControl(t, ch, json);
    }

    private void verifyCrc() {
        int actual = (int) crc.getValue();
        if (actual != expectedCrc) {
            throw new ProtocolException(String.format("frame %d: %s CRC32C mismatch: computed 0x%08x, frame says "
                    + "0x%08x", expectedSeq, type, actual, expectedCrc));
        }
    }

    private void nextFrame() {
        frames++;
        expectedSeq++;
        phase = Phase.HEADER;
        header.clear();
        collected = null;
    }
}
