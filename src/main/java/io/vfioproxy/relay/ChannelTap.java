package io.vfioproxy.relay;

import io.vertx.core.buffer.Buffer;
import java.util.function.Consumer;
import java.util.function.LongSupplier;

/**
 * Tells a channel's kind by its first four bytes, as QEMU's destination does (QEVM: the main channel; 0x11223344:
 * a multifd channel), and shows everything after to the observer of that kind.
 */
final class ChannelTap implements Consumer<Buffer> {

    private final LongSupplier clock;
    private final byte[] first = new byte[4];
    private int have;
    private volatile QemuStreamObserver main;
    private volatile MultifdObserver multifd;
    private volatile String kind = "pending";

    ChannelTap(LongSupplier clock) {
        this.clock = clock;
    }

    @Override
    public void accept(Buffer bytes) {
        if (main != null) {
            main.feed(bytes);
        } else if (multifd != null) {
            multifd.feed(bytes);
        } else if (kind.equals("pending")) {
            int n = Math.min(4 - have, bytes.length());
            bytes.getBytes(0, n, first, have);
            have += n;
            if (have < 4) {
                return;
            }
            int magic = ((first[0] & 0xff) << 24) | ((first[1] & 0xff) << 16) | ((first[2] & 0xff) << 8)
                    | (first[3] & 0xff);
            if (magic == QemuFormat.QEMU_VM_FILE_MAGIC) {
                main = new QemuStreamObserver(clock);
                main.feed(Buffer.buffer(first));
                kind = "main";
            } else if (magic == QemuFormat.MULTIFD_MAGIC) {
                multifd = new MultifdObserver();
                multifd.feed(Buffer.buffer(first));
                kind = "multifd";
            } else {
                kind = "unknown";
                return;
            }
            if (n < bytes.length()) {
                accept(bytes.slice(n, bytes.length()));
            }
        }
    }

    /** "main", "multifd", "unknown" (neither: QEMU's own TLS, or another hypervisor), or "pending". */
    String kind() {
        return kind;
    }

    /** The main channel's observer, or null. */
    QemuStreamObserver main() {
        return main;
    }

    /** The multifd channel's observer, or null. */
    MultifdObserver multifd() {
        return multifd;
    }
}
