package io.vfioproxy.device.sim;

import java.nio.ByteBuffer;

/**
 * The simulated device's migration stream, opaque to the agent as a real driver's is (big-endian):
 * header {@code u64 magic, u32 pageSize, u32 reserved, u64 pageCount, u64 seed}; records
 * {@code u64 pageIndex, u64 version, pageSize bytes}; trailer {@code u64 -1, u64 stateDigest}.
 */
public final class SimStream {

    public static final long MAGIC = 0x564D5053494D0002L;
    public static final int HEADER_SIZE = 32;
    public static final int RECORD_HEADER_SIZE = 16;
    public static final int TRAILER_SIZE = 16;
    /** A record whose page index is this is the trailer. */
    static final long TRAILER_MARK = -1L;

    private SimStream() {
    }

    /** The bytes a whole stop-copy stream of {@code pageCount} pages of {@code pageSize} has. */
    public static long size(int pageSize, int pageCount) {
        return HEADER_SIZE + (long) pageCount * (RECORD_HEADER_SIZE + pageSize) + TRAILER_SIZE;
    }

    static ByteBuffer header(PageImage image) {
        return ByteBuffer.allocate(HEADER_SIZE).putLong(MAGIC).putInt(image.pageSize()).putInt(0)
                .putLong(image.pageCount()).putLong(image.seed()).flip();
    }

    static void recordHeader(ByteBuffer into, long page, long version) {
        into.clear();
        into.putLong(page).putLong(version).flip();
    }

    static ByteBuffer trailer(long digest) {
        return ByteBuffer.allocate(TRAILER_SIZE).putLong(TRAILER_MARK).putLong(digest).flip();
    }

    /** Copies what fits of {@code src} into {@code dst} up to position {@code end}. */
    static void put(ByteBuffer src, ByteBuffer dst, int end) {
        int n = Math.min(src.remaining(), end - dst.position());
        dst.put(dst.position(), src, src.position(), n);
        dst.position(dst.position() + n);
        src.position(src.position() + n);
    }

    /** Copies what fits of {@code src} into {@code into}. */
    static void fill(ByteBuffer into, ByteBuffer src) {
        int n = Math.min(into.remaining(), src.remaining());
        into.put(into.position(), src, src.position(), n);
        into.position(into.position() + n);
        src.position(src.position() + n);
    }
}
