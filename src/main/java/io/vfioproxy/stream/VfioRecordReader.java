package io.vfioproxy.stream;

import io.vertx.core.buffer.Buffer;

/**
 * Reads QEMU's VFIO device-section records, as hw/vfio/migration.c writes them, from bytes of any segmentation:
 * a be64 tag ({@link VfioTag}); after DEV_DATA_STATE a be64 size and that many bytes of device data; after any other
 * tag nothing of its own (DEV_CONFIG_STATE is followed by the device's config, which is its reader's to take).
 * The one codec of that format: the frame decoder reads SECTION payloads with it, and the relay's observer reads QEMU's
 * own stream with it.
 *
 * <p>A pull parser: each {@link #step} consumes what one event needs, or all it is given, and says which event it
 * reached. Data is handed on as a range of the input, never copied.
 */
public final class VfioRecordReader {

    /** What the last {@link #step} reached. */
    public enum Event {
        /** The input ran out before the next event. */
        NEED_MORE,
        /** A tag was read: {@link #tag()}, or {@link #unknownTag()} when it is none QEMU defines. */
        TAG,
        /** DEV_DATA_STATE's size was read: {@link #dataSize()} bytes of data follow. */
        DATA_START,
        /** The next piece of the data: the input from {@link #dataFrom()} to the returned position. */
        DATA,
        /** The last byte of the data was read. */
        DATA_END
    }

    private enum State { TAG, SIZE, DATA }

    private State state = State.TAG;
    private long word;
    private int wordBytes;
    private VfioTag tag;
    private long unknownTag;
    private long dataSize;
    private long dataLeft;
    private int dataFrom;
    private Event event = Event.NEED_MORE;

    /**
     * Reads from {@code input} between {@code pos} and {@code end}.
     *
     * @return the position after what was consumed; {@link #event()} says what was reached there
     */
    public int step(Buffer input, int pos, int end) {
        switch (state) {
            case TAG, SIZE -> {
                while (pos < end && wordBytes < 8) {
                    word = (word << 8) | (input.getByte(pos++) & 0xff);
                    wordBytes++;
                }
                if (wordBytes < 8) {
                    event = Event.NEED_MORE;
                    return pos;
                }
                long value = word;
                word = 0;
                wordBytes = 0;
                if (state == State.TAG) {
                    tag = VfioTag.of(value);
                    unknownTag = tag == null ? value : 0;
                    state = tag == VfioTag.DEV_DATA_STATE ? State.SIZE : State.TAG;
                    event = Event.TAG;
                } else {
                    if (value < 0) {
                        throw new ProtocolException(String.format("DEV_DATA_STATE size 0x%016x is negative", value));
                    }
                    dataSize = value;
                    dataLeft = value;
                    state = value == 0 ? State.TAG : State.DATA;
                    event = Event.DATA_START;
                }
                return pos;
            }
            case DATA -> {
                if (pos == end) {
                    event = Event.NEED_MORE;
                    return pos;
                }
                int n = (int) Math.min(dataLeft, end - pos);
                dataFrom = pos;
                dataLeft -= n;
                event = dataLeft == 0 ? Event.DATA_END : Event.DATA;
                if (dataLeft == 0) {
                    state = State.TAG;
                }
                return pos + n;
            }
            default -> throw new IllegalStateException(state.name());
        }
    }

    /** What the last step reached. */
    public Event event() {
        return event;
    }

    /** The tag the last TAG event read, or null when it was no tag QEMU defines. */
    public VfioTag tag() {
        return tag;
    }

    /** The value of the unknown tag the last TAG event read. */
    public long unknownTag() {
        return unknownTag;
    }

    /** The size DATA_START read. */
    public long dataSize() {
        return dataSize;
    }

    /** Where the piece of data a DATA or DATA_END event covers starts in the input. */
    public int dataFrom() {
        return dataFrom;
    }

    /** True between records: the next bytes are a tag. */
    public boolean atRecordStart() {
        return state == State.TAG && wordBytes == 0;
    }

    /** Forgets a record under way: the next bytes are read as a tag. */
    public void restart() {
        state = State.TAG;
        word = 0;
        wordBytes = 0;
    }
}
