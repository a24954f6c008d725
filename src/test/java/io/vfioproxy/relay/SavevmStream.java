package io.vfioproxy.relay;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/**
 * Writes a QEMU savevm stream as migration/savevm.c and migration/ram.c write it (QEVM, configuration, sections
 * with footers, RAM records, EOF, VM description), for tests of the observer on streams whose every byte is known.
 */
final class SavevmStream {

    private final ByteArrayOutputStream out = new ByteArrayOutputStream();

    SavevmStream() {
        be32(QemuFormat.QEMU_VM_FILE_MAGIC);
        be32(QemuFormat.QEMU_VM_FILE_VERSION);
    }

    SavevmStream u8(int v) {
        out.write(v);
        return this;
    }

    SavevmStream be16(int v) {
        out.write(v >>> 8);
        out.write(v);
        return this;
    }

    SavevmStream be32(int v) {
        out.writeBytes(ByteBuffer.allocate(4).putInt(v).array());
        return this;
    }

    SavevmStream be64(long v) {
        out.writeBytes(ByteBuffer.allocate(8).putLong(v).array());
        return this;
    }

    SavevmStream bytes(byte[] b) {
        out.writeBytes(b);
        return this;
    }

    SavevmStream str8(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        u8(b.length);
        return bytes(b);
    }

    /** The configuration section: the machine's name and, as QEMU sends it, the capabilities subsection. */
    SavevmStream configuration(String machine, String... capabilities) {
        u8(QemuFormat.QEMU_VM_CONFIGURATION);
        byte[] name = machine.getBytes(StandardCharsets.UTF_8);
        be32(name.length).bytes(name);
        if (capabilities.length > 0) {
            u8(QemuFormat.QEMU_VM_SUBSECTION).str8("configuration/capabilities").be32(1).be32(capabilities.length);
            for (String c : capabilities) {
                str8(c);
            }
        }
        return this;
    }

    /** SECTION_START or SECTION_FULL: type, id, idstr, instance and version. */
    SavevmStream open(int type, int id, String idstr) {
        return u8(type).be32(id).str8(idstr).be32(0).be32(1);
    }

    /** SECTION_PART or SECTION_END. */
    SavevmStream part(int type, int id) {
        return u8(type).be32(id);
    }

    SavevmStream footer(int id) {
        return u8(QemuFormat.QEMU_VM_SECTION_FOOTER).be32(id);
    }

    /** RAM_SAVE_FLAG_MEM_SIZE and the block list. */
    SavevmStream memSize(String block, long length) {
        return be64(length | QemuFormat.RAM_SAVE_FLAG_MEM_SIZE).str8(block).be64(length);
    }

    /** A whole page; the first of a block names it, the others continue it. */
    SavevmStream page(String block, long offset, boolean first, byte[] page) {
        be64(offset | QemuFormat.RAM_SAVE_FLAG_PAGE | (first ? 0 : QemuFormat.RAM_SAVE_FLAG_CONTINUE));
        if (first) {
            str8(block);
        }
        return bytes(page);
    }

    SavevmStream zeroPage(long offset) {
        return be64(offset | QemuFormat.RAM_SAVE_FLAG_ZERO | QemuFormat.RAM_SAVE_FLAG_CONTINUE).u8(0);
    }

    SavevmStream eos() {
        return be64(QemuFormat.RAM_SAVE_FLAG_EOS);
    }

    SavevmStream eof(String vmdesc) {
        u8(QemuFormat.QEMU_VM_EOF);
        byte[] json = vmdesc.getBytes(StandardCharsets.UTF_8);
        return u8(QemuFormat.QEMU_VM_VMDESCRIPTION).be32(json.length).bytes(json);
    }

    int size() {
        return out.size();
    }

    byte[] toByteArray() {
        return out.toByteArray();
    }
}
