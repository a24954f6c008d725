package io.vfioproxy.relay;

import static io.vfioproxy.relay.QemuFormat.MULTIFD_FLAG_COMPRESSION_MASK;
import static io.vfioproxy.relay.QemuFormat.MULTIFD_FLAG_DEVICE_STATE;
import static io.vfioproxy.relay.QemuFormat.MULTIFD_FLAG_SYNC;
import static io.vfioproxy.relay.QemuFormat.MULTIFD_INIT_SIZE;
import static io.vfioproxy.relay.QemuFormat.MULTIFD_MAGIC;
import static io.vfioproxy.relay.QemuFormat.MULTIFD_PACKET_HEADER;
import static io.vfioproxy.relay.QemuFormat.MULTIFD_VERSION;
import static io.vfioproxy.relay.QemuFormat.TARGET_PAGE_SIZE;

import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads one multifd channel of QEMU's migration as it passes (migration/multifd.c): the initial packet
 * (MultiFDInit_t, with the channel's id), then packets of RAM pages, each a header (MultiFDPacket_t with its
 * offsets) and the pages. Like {@link QemuStreamObserver} it only looks, and where it cannot read on it notes why
 * and counts bytes.
 *
 * <p>Fed on one thread at a time; {@link #report()} may be called from any.
 */
public final class MultifdObserver {

    private enum Step { INIT, HEADER, FIRST_OFFSET, SKIP, LOST }

    private final ByteBuffer field = ByteBuffer.allocate(MULTIFD_PACKET_HEADER);
    private Step step = Step.INIT;
    private long skipLeft;
    private long pagesAfterOffsets;
    private long offset;

    private int channelId = -1;
    private long bytes;
    private long packets;
    private long normalPages;
    private long zeroPages;
    private long syncPackets;
    private long pageBytes;
    private long passes;
    private final List<String> blocks = new ArrayList<>();
    private int lastBlock = -1;
    private long lastOffset = -1;
    private int packetBlock;
    private int packetNormal;
    private String note;

    public MultifdObserver() {
        field.limit(MULTIFD_INIT_SIZE);
    }

    /** Reads {@code input}, the channel's next bytes. Never throws: a problem becomes the note. */
    public synchronized void feed(Buffer input) {
        bytes += input.length();
        int pos = 0;
        int end = input.length();
        try {
            while (pos < end && step != Step.LOST) {
                if (step == Step.SKIP) {
                    int n = (int) Math.min(skipLeft, end - pos);
                    skipLeft -= n;
                    pos += n;
                    offset += n;
                    if (skipLeft == 0) {
                        want(MULTIFD_PACKET_HEADER, Step.HEADER);
                    }
                    continue;
                }
                int n = Math.min(field.remaining(), end - pos);
                for (int i = 0; i < n; i++) {
                    field.put(input.getByte(pos + i));
                }
                pos += n;
                offset += n;
                if (!field.hasRemaining()) {
                    onField();
                }
            }
        } catch (RuntimeException e) {
            lose("the observer failed: " + e);
        }
    }

    private void want(int n, Step next) {
        field.clear();
        field.limit(n);
        step = next;
    }

    private void onField() {
        switch (step) {
            case INIT -> {
                if (field.getInt(0) != MULTIFD_MAGIC) {
                    lose(String.format("not a multifd channel: magic 0x%08x, expected 0x%08x", field.getInt(0),
                            MULTIFD_MAGIC));
                    return;
                }
                if (field.getInt(4) != MULTIFD_VERSION) {
                    lose("multifd version " + field.getInt(4) + ", this observer reads " + MULTIFD_VERSION);
                    return;
                }
                channelId = field.get(24) & 0xff;
                want(MULTIFD_PACKET_HEADER, Step.HEADER);
            }
            case HEADER -> packet();
            case FIRST_OFFSET -> {
                countPass(packetBlock, field.getLong(0));
                skipToNextPacket(pagesAfterOffsets);
            }
            default -> throw new IllegalStateException(step.name());
        }
    }

    private void packet() {
        int magic = field.getInt(0);
        int version = field.getInt(4);
        int flags = field.getInt(8);
        long pagesAlloc = field.getInt(12) & 0xffffffffL;
        packetNormal = field.getInt(16);
        long next = field.getInt(20) & 0xffffffffL;
        if (magic != MULTIFD_MAGIC || version != MULTIFD_VERSION) {
            lose(String.format("multifd packet %d: magic 0x%08x version %d", packets, magic, version));
            return;
        }
        if ((flags & MULTIFD_FLAG_DEVICE_STATE) != 0) {
            lose("a multifd device-state packet (QEMU 10), which this observer does not read");
            return;
        }
        if (packetNormal < 0 || packetNormal > pagesAlloc) {
            lose("multifd packet " + packets + " has " + Integer.toUnsignedString(packetNormal) + " pages of "
                    + pagesAlloc);
            return;
        }
        packets++;
        normalPages += packetNormal;
        // QEMU 9 counts zero pages in what 7.2 leaves unused (and zero).
        zeroPages += field.getInt(40) & 0xffffffffL;
        // Uncompressed, the pages are whole target pages; next_packet_size is stale in a packet without pages (a
        // sync), and QEMU's receiver reads normal_pages pages whatever it says. Compressed, it is their size.
        if (packetNormal == 0) {
            next = 0;
        } else if ((flags & MULTIFD_FLAG_COMPRESSION_MASK) == 0) {
            next = (long) packetNormal * TARGET_PAGE_SIZE;
        }
        pageBytes += next;
        if ((flags & MULTIFD_FLAG_SYNC) != 0) {
            syncPackets++;
        }
        String block = ramblock();
        int index = blocks.indexOf(block);
        if (index < 0 && !block.isEmpty()) {
            blocks.add(block);
            index = blocks.size() - 1;
        }
        packetBlock = index;
        long offsets = 8 * pagesAlloc;
        if (packetNormal > 0) {
            pagesAfterOffsets = offsets - 8 + next;
            want(8, Step.FIRST_OFFSET);
        } else {
            skipToNextPacket(offsets + next);
        }
    }

    private String ramblock() {
        int len = 0;
        while (len < 256 && field.get(64 + len) != 0) {
            len++;
        }
        byte[] name = new byte[len];
        field.get(64, name);
        return new String(name, StandardCharsets.UTF_8);
    }

    /** A packet whose first page lies behind the last packet's begins another pass over the guest's memory. */
    private void countPass(int block, long pageOffset) {
        boolean behind = block < lastBlock || block == lastBlock && pageOffset <= lastOffset;
        if (passes == 0 || behind) {
            passes++;
        }
        lastBlock = block;
        lastOffset = pageOffset;
    }

    /** Skips {@code n} bytes (the rest of a packet), then reads the next packet's header. */
    private void skipToNextPacket(long n) {
        if (n == 0) {
            want(MULTIFD_PACKET_HEADER, Step.HEADER);
            return;
        }
        skipLeft = n;
        step = Step.SKIP;
    }

    private void lose(String why) {
        if (note == null) {
            note = "cannot parse past offset " + offset + ": " + why;
        }
        step = Step.LOST;
    }

    /** Where the channel stands if it ends now: null between packets, else where. */
    public synchronized String endNote() {
        if (note != null) {
            return note;
        }
        if (step == Step.HEADER && field.position() == 0) {
            return null;
        }
        return "the channel ended at offset " + offset + " inside " + (step == Step.INIT ? "its initial packet"
                : "packet " + packets);
    }

    /** What it saw so far. */
    public synchronized Report report() {
        return new Report(channelId, bytes, packets, normalPages, zeroPages, syncPackets, pageBytes, passes, note);
    }

    /**
     * @param channelId the id in the channel's initial packet, or -1 before it
     * @param bytes bytes observed
     * @param packets packets of pages (sync packets included)
     * @param normalPages pages sent
     * @param zeroPages pages a QEMU 9 or later sent as zero pages here
     * @param syncPackets packets that closed one of QEMU's iterations (MULTIFD_FLAG_SYNC)
     * @param pageBytes bytes of pages, without the headers
     * @param passes passes over the guest's memory this channel saw
     * @param note where and why it stopped parsing, or null
     */
    public record Report(int channelId, long bytes, long packets, long normalPages, long zeroPages,
            long syncPackets, long pageBytes, long passes, String note) {
        public JsonObject toJson() {
            JsonObject json = new JsonObject().put("multifdChannel", channelId).put("bytes", bytes)
                    .put("packets", packets).put("normalPages", normalPages).put("zeroPages", zeroPages)
                    .put("syncPackets", syncPackets).put("pageBytes", pageBytes).put("passes", passes);
            if (note != null) {
                json.put("note", note);
            }
            return json;
        }
    }
}
