package io.vfioproxy.stream;

/**
 * Size limits of the protocol that a receiver enforces before it buffers or forwards anything.
 *
 * @param maxControlPayload the largest JSON control frame accepted
 * @param maxChunk the largest DEV_DATA_STATE chunk accepted (the SECTION frame may be 16 bytes larger)
 */
public record Limits(int maxControlPayload, int maxChunk) {

    /** The most any agent accepts, whatever it is configured with. */
    public static final int HARD_MAX_CHUNK = 16 << 20;

    public static final Limits DEFAULT = new Limits(64 << 10, 4 << 20);

    public Limits {
        if (maxControlPayload < 256 || maxChunk < 4096 || maxChunk > HARD_MAX_CHUNK) {
            throw new IllegalArgumentException("limits out of range: control " + maxControlPayload + ", chunk "
                    + maxChunk + " (4096 to " + HARD_MAX_CHUNK + ")");
        }
    }

    /** The largest SECTION payload: tag and size words plus a chunk. */
    public int maxSectionPayload() {
        return Frames.DATA_RECORD_HEADER + maxChunk;
    }
}
