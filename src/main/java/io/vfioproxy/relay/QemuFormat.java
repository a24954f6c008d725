package io.vfioproxy.relay;

/**
 * The facts of QEMU's migration stream format that the relay's observers read, with QEMU's names and values.
 * Checked against Debian's QEMU 7.2 sources; later versions noted where they add to them.
 */
final class QemuFormat {

    private QemuFormat() {
    }

    // migration/savevm.h
    static final int QEMU_VM_FILE_MAGIC = 0x5145564d;
    static final int QEMU_VM_FILE_VERSION = 3;
    static final int QEMU_VM_EOF = 0x00;
    static final int QEMU_VM_SECTION_START = 0x01;
    static final int QEMU_VM_SECTION_PART = 0x02;
    static final int QEMU_VM_SECTION_END = 0x03;
    static final int QEMU_VM_SECTION_FULL = 0x04;
    static final int QEMU_VM_SUBSECTION = 0x05;
    static final int QEMU_VM_VMDESCRIPTION = 0x06;
    static final int QEMU_VM_CONFIGURATION = 0x07;
    static final int QEMU_VM_COMMAND = 0x08;
    static final int QEMU_VM_SECTION_FOOTER = 0x7e;

    // migration/savevm.c: enum qemu_vm_cmd
    static final int MIG_CMD_PACKAGED = 7;

    // migration/ram.c
    static final int RAM_SAVE_FLAG_ZERO = 0x02;
    static final int RAM_SAVE_FLAG_MEM_SIZE = 0x04;
    static final int RAM_SAVE_FLAG_PAGE = 0x08;
    static final int RAM_SAVE_FLAG_EOS = 0x10;
    static final int RAM_SAVE_FLAG_CONTINUE = 0x20;
    static final int RAM_SAVE_FLAG_XBZRLE = 0x40;
    static final int RAM_SAVE_FLAG_HOOK = 0x80;
    static final int RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100;
    /** QEMU 8.2 and later. */
    static final int RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200;
    static final int ENCODING_FLAG_XBZRLE = 0x1;
    /** x86's target page: TARGET_PAGE_BITS 12, unless the configuration's target-page-bits subsection says more. */
    static final int DEFAULT_TARGET_PAGE_BITS = 12;

    // migration/multifd.c, multifd.h
    static final int MULTIFD_MAGIC = 0x11223344;
    static final int MULTIFD_VERSION = 1;
    /** MultiFDInit_t: magic, version, uuid[16], id, unused1[7], unused2[4] (u64). */
    static final int MULTIFD_INIT_SIZE = 64;
    /**
     * MultiFDPacket_t up to its offset array: magic, version, flags, pages_alloc, normal_pages, next_packet_size
     * (be32 each), packet_num (be64), unused (4 x u64; QEMU 9 puts zero_pages, be32, in the first), ramblock[256].
     */
    static final int MULTIFD_PACKET_HEADER = 320;
    static final int MULTIFD_FLAG_SYNC = 1;
    /** MULTIFD_FLAG_NOCOMP (0), ZLIB (1 << 1), ZSTD (2 << 1). */
    static final int MULTIFD_FLAG_COMPRESSION_MASK = 7 << 1;
    /** x86's target page, which multifd channels carry whole when uncompressed. */
    static final int TARGET_PAGE_SIZE = 1 << DEFAULT_TARGET_PAGE_BITS;
    /** QEMU 10: a packet of device state instead of RAM pages. */
    static final int MULTIFD_FLAG_DEVICE_STATE = 1 << 6;

    /** The idstr suffix of a VFIO device's section (hw/vfio/migration.c). */
    static final String VFIO_IDSTR_SUFFIX = "/vfio";

    /** The name of a section type, for notes. */
    static String sectionTypeName(int type) {
        return switch (type) {
            case QEMU_VM_EOF -> "EOF";
            case QEMU_VM_SECTION_START -> "SECTION_START";
            case QEMU_VM_SECTION_PART -> "SECTION_PART";
            case QEMU_VM_SECTION_END -> "SECTION_END";
            case QEMU_VM_SECTION_FULL -> "SECTION_FULL";
            case QEMU_VM_SUBSECTION -> "SUBSECTION";
            case QEMU_VM_VMDESCRIPTION -> "VMDESCRIPTION";
            case QEMU_VM_CONFIGURATION -> "CONFIGURATION";
            case QEMU_VM_COMMAND -> "COMMAND";
            case QEMU_VM_SECTION_FOOTER -> "SECTION_FOOTER";
            default -> String.format("0x%02x", type);
        };
    }
}
