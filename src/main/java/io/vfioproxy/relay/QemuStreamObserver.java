package io.vfioproxy.relay;

import static io.vfioproxy.relay.QemuFormat.DEFAULT_TARGET_PAGE_BITS;
import static io.vfioproxy.relay.QemuFormat.ENCODING_FLAG_XBZRLE;
import static io.vfioproxy.relay.QemuFormat.MIG_CMD_PACKAGED;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_COMMAND;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_CONFIGURATION;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_EOF;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_FILE_MAGIC;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_FILE_VERSION;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_SECTION_END;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_SECTION_FOOTER;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_SECTION_FULL;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_SECTION_PART;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_SECTION_START;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_SUBSECTION;
import static io.vfioproxy.relay.QemuFormat.QEMU_VM_VMDESCRIPTION;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_COMPRESS_PAGE;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_CONTINUE;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_EOS;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_HOOK;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_MEM_SIZE;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_MULTIFD_FLUSH;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_PAGE;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_XBZRLE;
import static io.vfioproxy.relay.QemuFormat.RAM_SAVE_FLAG_ZERO;
import static io.vfioproxy.relay.QemuFormat.VFIO_IDSTR_SUFFIX;

import io.vertx.core.buffer.Buffer;
import io.vfioproxy.stream.VfioRecordReader;
import io.vfioproxy.stream.VfioTag;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * Reads QEMU's migration stream, the main channel, as it passes through a relay: it looks at the bytes, never
 * copies them, never holds them back and never changes them, and nothing it meets stops it. The savevm format
 * (docs/devel/migration.rst "Stream structure"; migration/savevm.c): the QEVM magic and version, the
 * configuration section, then sections (START, PART, END, FULL; each with a footer), commands, EOF and the
 * VM description. Inside them: RAM records (migration/ram.c), VFIO device sections ({@link VfioRecordReader}, the
 * codec the agents' own sections use), and device state in VMState format, which it does not decode but skips to
 * the section's footer. Those bytes may hold a footer's five by chance, so a footer found there counts only once the
 * bytes after it start what may follow a section (at most {@value #PROBE_MAX} bytes, looked at, not held back).
 *
 * <p>Where it meets something it cannot read (another format, a newer QEMU, a stream that lost its framing) it
 * notes the offset and why, once, and from there only counts bytes.
 *
 * <p>Fed on one thread at a time; {@link #report()} may be called from any.
 */
public final class QemuStreamObserver {

    /** What a section holds, from its idstr. */
    enum Kind {
        RAM, VFIO, DEVICE, OTHER;

        String wireName() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    private enum Step {
        MAGIC, VERSION, SECTION_TYPE, CONFIG_LEN, CONFIG_NAME, AFTER_CONFIG_FIELD, SUB_NAME_LEN, SUB_NAME,
        SUB_VERSION, SUB_PAGE_BITS, SUB_CAPS_COUNT, SUB_CAP_LEN, SUB_CAP_NAME, SUB_UUID,
        SECTION_ID, IDSTR_LEN, IDSTR, INSTANCE_ID, VERSION_ID,
        RAM_WORD, RAM_BLOCK_LEN, RAM_BLOCK_NAME, RAM_BLOCK_SIZE, RAM_BLOCK_EXTRA, RAM_ID_LEN, RAM_ID,
        RAM_XBZRLE_HEADER, RAM_COMPRESS_HEADER, SKIP,
        VFIO, SCAN_FOOTER, PROBE, AFTER_SECTION, FOOTER_ID, COMMAND_HEADER, VMDESC_LEN, AFTER_EOF, DONE, LOST
    }

    /**
     * The most bytes after a footer candidate that decide it: a SECTION_START or SECTION_FULL header with the longest
     * idstr (type, section id, idstr length and idstr, instance and version ids).
     */
    private static final int PROBE_MAX = 1 + 4 + 1 + 255 + 4 + 4;
    /** QEMU's commands number fewer than this (enum qemu_vm_cmd); a larger number is no command. */
    private static final int COMMANDS_BELOW = 32;

    /** One device's sections (by idstr). */
    private static final class Section {
        final String idstr;
        final Kind kind;
        long bytes;
        long sections;
        long vfioDataBytes;
        long vfioRecords;
        long vfioIterations;

        Section(String idstr) {
            this.idstr = idstr;
            this.kind = idstr.equals("ram") ? Kind.RAM : idstr.endsWith(VFIO_IDSTR_SUFFIX) ? Kind.VFIO : Kind.DEVICE;
        }
    }

    private final LongSupplier clock;
    private final byte[] field = new byte[256];
    private int fieldLen;
    private int fieldWant;
    private Step step = Step.MAGIC;
    private Step afterSkip;
    private long skipLeft;
    private long offset;

    // The section being read.
    private int sectionType;
    private int sectionId;
    private Section section;
    private long sectionStartOffset;
    private boolean sawEndOfState;
    private final Map<Integer, Section> sectionsById = new HashMap<>();
    private final Map<String, Section> sections = new LinkedHashMap<>();
    /** Whether sections end with footers (every machine type after 2.3): null until the first section ended. */
    private Boolean footers;
    private long footerWindow;
    private long footerPattern;
    private int scanned;
    /** The bytes after a footer candidate in a body not decoded, until they show whether a section follows. */
    private final byte[] probe = new byte[PROBE_MAX];
    private int probeLen;
    private long probeFrom;

    // Configuration.
    private int configLeft;
    private int capsLeft;
    private int targetPageBits = DEFAULT_TARGET_PAGE_BITS;
    private boolean ignoreShared;

    // RAM records.
    private long ramTotal;
    private long ramBlocksSum;
    private int ramFlags;
    private long ramOffset;
    private final List<String> ramBlocks = new ArrayList<>();
    private int ramBlock = -1;
    private long lastPageBlock = -1;
    private long lastPageOffset = -1;

    private final VfioRecordReader vfio = new VfioRecordReader();

    // What it counted.
    private long totalBytes;
    private long normalPages;
    private long zeroPages;
    private long xbzrlePages;
    private long compressedPages;
    private long passes;
    private long ramIterations;
    private long firstSectionEndNanos = -1;
    private long firstSectionEndOffset = -1;
    private long eofNanos = -1;
    private long eofOffset = -1;
    private String note;

    /** @param clock nanoseconds, for when the VM stopped and when the stream ended ({@code System::nanoTime}) */
    public QemuStreamObserver(LongSupplier clock) {
        this.clock = clock;
        need(4, Step.MAGIC);
    }

    /** Reads {@code bytes}, the next part of the stream. Never throws: a problem becomes the note. */
    public synchronized void feed(Buffer bytes) {
        totalBytes += bytes.length();
        try {
            consume(bytes, 0, bytes.length());
        } catch (RuntimeException e) {
            lose("the observer failed: " + e);
        }
    }

    private void consume(Buffer bytes, int pos, int end) {
        while (pos < end && step != Step.LOST) {
            if (step == Step.DONE) {
                // Not a migration that failed: QEMU's stream ended here as far as this observer can tell.
                lose("bytes after the VM description, where QEMU's stream ends");
                return;
            }
            pos = advance(bytes, pos, end);
        }
    }

    private int advance(Buffer in, int pos, int end) {
        switch (step) {
            case SKIP -> {
                int n = (int) Math.min(skipLeft, end - pos);
                skipLeft -= n;
                offset += n;
                if (skipLeft == 0) {
                    Step next = afterSkip;
                    step = next;
                    afterSkipped(next);
                }
                return pos + n;
            }
            case VFIO -> {
                int after;
                try {
                    after = vfio.step(in, pos, end);
                } catch (io.vfioproxy.stream.ProtocolException e) {
                    lose(e.getMessage() + " in section " + sectionId + " (" + section.idstr + ")");
                    return end;
                }
                offset += after - pos;
                vfioEvent(after);
                return after;
            }
            case SCAN_FOOTER -> {
                while (pos < end) {
                    footerWindow = ((footerWindow << 8) | (in.getByte(pos++) & 0xff)) & 0xff_ffff_ffffL;
                    offset++;
                    scanned++;
                    if (scanned >= 5 && footerWindow == footerPattern) {
                        // VMState is not decoded, so its bytes may hold the footer's five by chance (QEMU 7.2's
                        // timer, section 0, does when the low byte of its tick offset is 0x7e): what follows decides.
                        probeLen = 0;
                        probeFrom = offset;
                        step = Step.PROBE;
                        return pos;
                    }
                }
                return pos;
            }
            case PROBE -> {
                probe[probeLen++] = in.getByte(pos);
                offset++;
                Boolean verdict = probeVerdict();
                if (verdict != null) {
                    decideProbe(verdict);
                }
                return pos + 1;
            }
            case AFTER_SECTION, SECTION_TYPE, AFTER_EOF, AFTER_CONFIG_FIELD -> {
                int b = in.getByte(pos) & 0xff;
                offset++;
                onByte(b);
                return pos + 1;
            }
            default -> {
                int n = Math.min(fieldWant - fieldLen, end - pos);
                in.getBytes(pos, pos + n, field, fieldLen);
                fieldLen += n;
                offset += n;
                if (fieldLen == fieldWant) {
                    onField();
                }
                return pos + n;
            }
        }
    }

    private void need(int n, Step next) {
        if (n == 0) {
            fieldLen = 0;
            fieldWant = 0;
            step = next;
            onField();
            return;
        }
        fieldLen = 0;
        fieldWant = n;
        step = next;
    }

    private void skip(long n, Step next) {
        if (n == 0) {
            step = next;
            afterSkipped(next);
            return;
        }
        skipLeft = n;
        afterSkip = next;
        step = Step.SKIP;
    }

    private int u8() {
        return field[0] & 0xff;
    }

    private int be16() {
        return be16(field, 0);
    }

    private int be32() {
        return be32(field, 0);
    }

    private long be64() {
        long v = 0;
        for (int i = 0; i < 8; i++) {
            v = (v << 8) | (field[i] & 0xff);
        }
        return v;
    }

    private String text() {
        return new String(field, 0, fieldLen, StandardCharsets.UTF_8);
    }

    /** Single-byte steps: a section type, or a byte that may start a footer or a subsection. */
    private void onByte(int b) {
        switch (step) {
            case AFTER_CONFIG_FIELD -> {
                if (b == QEMU_VM_SUBSECTION) {
                    need(1, Step.SUB_NAME_LEN);
                } else {
                    sectionType(b);
                }
            }
            case AFTER_SECTION -> {
                if (b == QEMU_VM_SECTION_FOOTER) {
                    footers = true;
                    need(4, Step.FOOTER_ID);
                } else {
                    if (footers == null) {
                        footers = false;
                    } else if (footers) {
                        lose(String.format("section %d (%s) has no footer: 0x%02x follows it", sectionId,
                                section.idstr, b));
                        return;
                    }
                    // The byte just read is the next section's.
                    finishSection(1);
                    sectionType(b);
                }
            }
            case AFTER_EOF -> {
                if (b == QEMU_VM_VMDESCRIPTION) {
                    need(4, Step.VMDESC_LEN);
                } else {
                    lose(String.format("0x%02x after EOF, where only the VM description may follow", b));
                }
            }
            default -> sectionType(b);
        }
    }

    private void sectionType(int type) {
        sectionType = type;
        sectionStartOffset = offset - 1;
        switch (type) {
            case QEMU_VM_SECTION_START, QEMU_VM_SECTION_FULL, QEMU_VM_SECTION_PART, QEMU_VM_SECTION_END -> {
                if (type == QEMU_VM_SECTION_END && firstSectionEndNanos < 0) {
                    // The source stopped the VM and completes: downtime starts here as the wire sees it.
                    firstSectionEndNanos = clock.getAsLong();
                    firstSectionEndOffset = sectionStartOffset;
                }
                need(4, Step.SECTION_ID);
            }
            case QEMU_VM_CONFIGURATION -> need(4, Step.CONFIG_LEN);
            case QEMU_VM_COMMAND -> need(4, Step.COMMAND_HEADER);
            case QEMU_VM_EOF -> {
                eofNanos = clock.getAsLong();
                eofOffset = sectionStartOffset;
                step = Step.AFTER_EOF;
            }
            default -> lose("unknown section type " + QemuFormat.sectionTypeName(type));
        }
    }

    private void onField() {
        switch (step) {
            case MAGIC -> {
                if (be32() != QEMU_VM_FILE_MAGIC) {
                    lose(String.format("not a QEMU migration stream: magic 0x%08x, expected 0x%08x (QEVM)", be32(),
                            QEMU_VM_FILE_MAGIC));
                    return;
                }
                need(4, Step.VERSION);
            }
            case VERSION -> {
                if (be32() != QEMU_VM_FILE_VERSION) {
                    lose("savevm format version " + be32() + ", this observer reads " + QEMU_VM_FILE_VERSION);
                    return;
                }
                step = Step.SECTION_TYPE;
            }
            case CONFIG_LEN -> {
                int len = be32();
                if (len < 0 || len > field.length) {
                    lose("configuration name of " + Integer.toUnsignedString(len) + " bytes");
                    return;
                }
                need(len, Step.CONFIG_NAME);
            }
            case CONFIG_NAME -> step = Step.AFTER_CONFIG_FIELD;
            case SUB_NAME_LEN -> need(u8(), Step.SUB_NAME);
            case SUB_NAME -> {
                String name = text();
                Step body = switch (name) {
                    case "configuration/target-page-bits" -> Step.SUB_PAGE_BITS;
                    case "configuration/capabilities" -> Step.SUB_CAPS_COUNT;
                    case "configuration/uuid" -> Step.SUB_UUID;
                    default -> null;
                };
                if (body == null) {
                    lose("unknown configuration subsection '" + name + "'");
                    return;
                }
                afterSkip = body;
                need(4, Step.SUB_VERSION);
            }
            case SUB_VERSION -> {
                Step body = afterSkip;
                need(body == Step.SUB_UUID ? 16 : 4, body);
            }
            case SUB_PAGE_BITS -> {
                targetPageBits = be32();
                if (targetPageBits < 10 || targetPageBits > 16) {
                    lose("target page bits " + targetPageBits);
                    return;
                }
                step = Step.AFTER_CONFIG_FIELD;
            }
            case SUB_CAPS_COUNT -> {
                capsLeft = be32();
                nextCapability();
            }
            case SUB_CAP_LEN -> need(u8(), Step.SUB_CAP_NAME);
            case SUB_CAP_NAME -> {
                if (text().equals("x-ignore-shared")) {
                    ignoreShared = true;
                }
                capsLeft--;
                nextCapability();
            }
            case SUB_UUID -> step = Step.AFTER_CONFIG_FIELD;
            case SECTION_ID -> {
                sectionId = be32();
                if (sectionType == QEMU_VM_SECTION_START || sectionType == QEMU_VM_SECTION_FULL) {
                    need(1, Step.IDSTR_LEN);
                } else {
                    section = sectionsById.get(sectionId);
                    if (section == null) {
                        lose(QemuFormat.sectionTypeName(sectionType) + " of section " + sectionId
                                + ", which no SECTION_START opened");
                        return;
                    }
                    beginBody();
                }
            }
            case IDSTR_LEN -> need(u8(), Step.IDSTR);
            case IDSTR -> {
                String idstr = text();
                section = sections.computeIfAbsent(idstr, Section::new);
                sectionsById.put(sectionId, section);
                need(4, Step.INSTANCE_ID);
            }
            case INSTANCE_ID -> need(4, Step.VERSION_ID);
            case VERSION_ID -> beginBody();
            case RAM_WORD -> ramRecord(be64());
            case RAM_BLOCK_LEN -> need(u8(), Step.RAM_BLOCK_NAME);
            case RAM_BLOCK_NAME -> {
                ramBlocks.add(text());
                need(8, Step.RAM_BLOCK_SIZE);
            }
            case RAM_BLOCK_SIZE -> {
                ramBlocksSum += be64();
                if (ignoreShared) {
                    need(8, Step.RAM_BLOCK_EXTRA);
                } else {
                    nextRamBlock();
                }
            }
            case RAM_BLOCK_EXTRA -> nextRamBlock();
            case RAM_ID_LEN -> need(u8(), Step.RAM_ID);
            case RAM_ID -> {
                String block = text();
                int index = ramBlocks.indexOf(block);
                if (index < 0) {
                    ramBlocks.add(block);
                    index = ramBlocks.size() - 1;
                }
                ramBlock = index;
                ramPayload();
            }
            case RAM_XBZRLE_HEADER -> {
                if ((field[0] & 0xff) != ENCODING_FLAG_XBZRLE) {
                    lose(String.format("XBZRLE page with encoding 0x%02x", field[0] & 0xff));
                    return;
                }
                xbzrlePages++;
                skip(((field[1] & 0xff) << 8) | (field[2] & 0xff), Step.RAM_WORD);
            }
            case RAM_COMPRESS_HEADER -> {
                compressedPages++;
                skip(be32() & 0xffffffffL, Step.RAM_WORD);
            }
            case FOOTER_ID -> {
                if (be32() != sectionId) {
                    lose("footer of section " + be32() + " where section " + sectionId + " (" + section.idstr
                            + ") ends");
                    return;
                }
                finishSection(0);
                step = Step.SECTION_TYPE;
            }
            case COMMAND_HEADER -> {
                int command = be16();
                int len = be16(field, 2);
                if (command == MIG_CMD_PACKAGED) {
                    lose("a packaged stream (postcopy), which this observer does not read");
                    return;
                }
                skip(len, Step.SECTION_TYPE);
            }
            case VMDESC_LEN -> {
                long len = be32() & 0xffffffffL;
                skip(len, Step.DONE);
            }
            default -> throw new IllegalStateException(step.name());
        }
    }

    /** A skip that ends where a RAM record comes next arms its field; other skips end in a byte step. */
    private void afterSkipped(Step next) {
        if (next == Step.RAM_WORD) {
            need(8, Step.RAM_WORD);
        }
    }

    private void nextCapability() {
        if (capsLeft <= 0) {
            step = Step.AFTER_CONFIG_FIELD;
        } else {
            need(1, Step.SUB_CAP_LEN);
        }
    }

    private void beginBody() {
        section.sections++;
        switch (section.kind) {
            case RAM -> {
                if (sectionType == QEMU_VM_SECTION_PART) {
                    ramIterations++;
                }
                need(8, Step.RAM_WORD);
            }
            case VFIO -> {
                vfio.restart();
                sawEndOfState = false;
                step = Step.VFIO;
            }
            default -> scanToFooter();
        }
    }

    /**
     * Whether the bytes after a footer candidate start what may follow a section: another section's header that
     * holds together (a printable idstr, a section id already opened), a command, or EOF with its VM description;
     * null while too few bytes have come to tell.
     */
    private Boolean probeVerdict() {
        switch (probe[0] & 0xff) {
            case QEMU_VM_SECTION_START, QEMU_VM_SECTION_FULL -> {
                if (probeLen < 6) {
                    return null;
                }
                int len = probe[5] & 0xff;
                if (len == 0) {
                    return false;
                }
                int c = probeLen - 1;
                if (c >= 6 && c < 6 + len && (probe[c] < 0x20 || probe[c] > 0x7e)) {
                    return false;
                }
                return probeLen < 6 + len + 8 ? null : true;
            }
            case QEMU_VM_SECTION_PART, QEMU_VM_SECTION_END -> {
                return probeLen < 5 ? null : sectionsById.containsKey(be32(probe, 1));
            }
            case QEMU_VM_COMMAND -> {
                if (probeLen < 3) {
                    return null;
                }
                int command = be16(probe, 1);
                return command > 0 && command < COMMANDS_BELOW;
            }
            case QEMU_VM_EOF -> {
                if (probeLen < 2) {
                    return null;
                }
                if ((probe[1] & 0xff) != QEMU_VM_VMDESCRIPTION) {
                    return false;
                }
                // The description is JSON: an object.
                return probeLen < 7 ? null : probe[6] == '{';
            }
            default -> {
                return false;
            }
        }
    }

    /**
     * The footer candidate was one (the section ends there) or was not (the scan goes on from it); either way the
     * probed bytes are read again, from where they started.
     */
    private void decideProbe(boolean footer) {
        Buffer again = Buffer.buffer(Arrays.copyOf(probe, probeLen));
        offset = probeFrom;
        if (footer) {
            endSection();
        } else {
            step = Step.SCAN_FOOTER;
        }
        consume(again, 0, again.length());
    }

    /**
     * The stream, if it ends now, ends where QEMU's does: after EOF (the VM description that may follow is for tools,
     * QEMU's destination has all it loads), also where EOF is the one byte after a footer candidate.
     */
    private boolean atQemusEnd() {
        return step == Step.DONE || step == Step.AFTER_EOF
                || (step == Step.PROBE && probeLen == 1 && probe[0] == QEMU_VM_EOF);
    }

    private static int be16(byte[] b, int at) {
        return ((b[at] & 0xff) << 8) | (b[at + 1] & 0xff);
    }

    private static int be32(byte[] b, int at) {
        return ((b[at] & 0xff) << 24) | ((b[at + 1] & 0xff) << 16) | ((b[at + 2] & 0xff) << 8) | (b[at + 3] & 0xff);
    }

    /** A body this observer does not decode (VMState, other iterative devices): on to its footer. */
    private void scanToFooter() {
        if (!Boolean.TRUE.equals(footers)) {
            lose("section " + sectionId + " (" + section.idstr + ") is in a format this observer does not decode, "
                    + "and the stream has no section footers to find its end");
            return;
        }
        footerPattern = ((long) QEMU_VM_SECTION_FOOTER << 32) | (sectionId & 0xffffffffL);
        footerWindow = 0;
        scanned = 0;
        step = Step.SCAN_FOOTER;
    }

    private void ramRecord(long word) {
        long pageMask = (1L << targetPageBits) - 1;
        ramFlags = (int) (word & pageMask);
        ramOffset = word & ~pageMask;
        int kind = ramFlags & ~RAM_SAVE_FLAG_CONTINUE;
        switch (kind) {
            case RAM_SAVE_FLAG_MEM_SIZE -> {
                ramTotal = ramOffset;
                ramBlocksSum = 0;
                nextRamBlock();
            }
            case RAM_SAVE_FLAG_ZERO, RAM_SAVE_FLAG_PAGE, RAM_SAVE_FLAG_XBZRLE, RAM_SAVE_FLAG_COMPRESS_PAGE -> {
                if ((ramFlags & RAM_SAVE_FLAG_CONTINUE) == 0) {
                    need(1, Step.RAM_ID_LEN);
                } else if (ramBlock < 0) {
                    lose("a RAM page continues a block that was never named");
                } else {
                    ramPayload();
                }
            }
            case RAM_SAVE_FLAG_EOS -> step = Step.AFTER_SECTION;
            case RAM_SAVE_FLAG_MULTIFD_FLUSH -> need(8, Step.RAM_WORD);
            case RAM_SAVE_FLAG_HOOK -> lose("a RAM hook record (RDMA), which this observer does not read");
            default -> lose(String.format("RAM record with flags 0x%x", ramFlags));
        }
    }

    private void nextRamBlock() {
        if (ramBlocksSum == ramTotal) {
            need(8, Step.RAM_WORD);
        } else if (ramBlocksSum > ramTotal) {
            lose("RAM blocks of " + ramBlocksSum + " bytes where the stream announced " + ramTotal);
        } else {
            need(1, Step.RAM_BLOCK_LEN);
        }
    }

    private void ramPayload() {
        int kind = ramFlags & ~RAM_SAVE_FLAG_CONTINUE;
        countPass();
        switch (kind) {
            case RAM_SAVE_FLAG_ZERO -> {
                zeroPages++;
                skip(1, Step.RAM_WORD);
            }
            case RAM_SAVE_FLAG_PAGE -> {
                normalPages++;
                skip(1L << targetPageBits, Step.RAM_WORD);
            }
            case RAM_SAVE_FLAG_XBZRLE -> need(3, Step.RAM_XBZRLE_HEADER);
            case RAM_SAVE_FLAG_COMPRESS_PAGE -> need(4, Step.RAM_COMPRESS_HEADER);
            default -> throw new IllegalStateException("flags " + ramFlags);
        }
    }

    /** A page behind the last one in QEMU's scan order begins another pass over the guest's memory. */
    private void countPass() {
        boolean behind = ramBlock < lastPageBlock || ramBlock == lastPageBlock && ramOffset <= lastPageOffset;
        if (passes == 0 || behind) {
            passes++;
        }
        lastPageBlock = ramBlock;
        lastPageOffset = ramOffset;
    }

    /** What the VFIO record reader reached; a piece of data ends at {@code after}. */
    private void vfioEvent(int after) {
        switch (vfio.event()) {
            case TAG -> {
                VfioTag tag = vfio.tag();
                if (tag == null) {
                    lose(String.format("unknown VFIO tag 0x%016x in section %d (%s)", vfio.unknownTag(), sectionId,
                            section.idstr));
                    return;
                }
                section.vfioRecords++;
                switch (tag) {
                    // QEMU's iterate closes its block with one or the other.
                    case END_OF_STATE, DEV_INIT_DATA_SENT -> {
                        if (sectionType == QEMU_VM_SECTION_PART) {
                            section.vfioIterations++;
                        }
                        step = Step.AFTER_SECTION;
                    }
                    // The device's config follows in VMState: on to the footer.
                    case DEV_CONFIG_STATE -> scanToFooter();
                    default -> { }
                }
            }
            case DATA, DATA_END -> section.vfioDataBytes += after - vfio.dataFrom();
            default -> { }
        }
    }

    private void endSection() {
        finishSection(0);
        step = Step.SECTION_TYPE;
    }

    /** The section ended {@code after} bytes before the offset. */
    private void finishSection(int after) {
        if (section != null) {
            section.bytes += offset - after - sectionStartOffset;
        }
        section = null;
    }

    private void lose(String why) {
        if (note == null) {
            note = "cannot parse past offset " + offset + ": " + why;
        }
        step = Step.LOST;
    }

    /** How the stream ended if it ends now: null when it ended where QEMU ends it (after EOF), else where and why. */
    public synchronized String endNote() {
        if (note != null) {
            return note;
        }
        if (atQemusEnd()) {
            return null;
        }
        if (eofOffset >= 0) {
            return "the stream ended at offset " + offset + " inside the VM description that follows QEMU's EOF";
        }
        return "the stream ended at offset " + offset + " before QEMU's EOF, " + where();
    }

    private String where() {
        if (step == Step.MAGIC || step == Step.VERSION) {
            return "in the stream header";
        }
        if (section != null) {
            return "in " + QemuFormat.sectionTypeName(sectionType) + " section " + sectionId + " (" + section.idstr
                    + ")";
        }
        return "between sections";
    }

    /** What it saw so far. */
    public synchronized QemuStreamReport report() {
        Map<String, QemuStreamReport.Device> devices = new LinkedHashMap<>();
        Map<String, Long> kinds = new LinkedHashMap<>();
        for (Kind k : Kind.values()) {
            kinds.put(k.wireName(), 0L);
        }
        long inSections = 0;
        for (Section s : sections.values()) {
            kinds.merge(s.kind.wireName(), s.bytes, Long::sum);
            inSections += s.bytes;
            devices.put(s.idstr, new QemuStreamReport.Device(s.kind.wireName(), s.bytes, s.sections,
                    s.vfioDataBytes, s.vfioIterations));
        }
        // Everything outside a finished section: the header, the configuration, commands, EOF, the VM description,
        // a section under way, and whatever could not be parsed.
        kinds.put(Kind.OTHER.wireName(), totalBytes - inSections);
        return new QemuStreamReport(totalBytes, kinds, devices, normalPages, zeroPages, xbzrlePages, compressedPages,
                passes, ramIterations, firstSectionEndNanos, eofNanos, firstSectionEndOffset, eofOffset,
                atQemusEnd(), note);
    }
}
