package io.vfioproxy.device.sim;

import io.vfioproxy.uapi.DeviceState;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * Where a simulated device keeps its state and its migration state ({@code stateFile}), as a real device keeps them
 * when the process that drove it dies: the next process that opens it finds it as it was, say in STOP_COPY with its
 * state, with no data session (that died with the fd). Written after every change of state; a page the workload
 * dirties in between is written with the next change.
 *
 * <pre>
 * be64 magic "VMPSIMST", be32 page size, be32 page count, be64 seed, be32 device state (uAPI value),
 * be32 version per page
 * </pre>
 */
final class StateFile {

    private static final long MAGIC = 0x564D5053494D5354L;
    private static final int HEADER = 8 + 4 + 4 + 8 + 4;

    /** What a state file held. */
    record Saved(DeviceState state, PageImage image) {
    }

    private final Path path;

    StateFile(Path path) {
        this.path = path;
    }

    Path path() {
        return path;
    }

    /**
     * The saved state of a device of {@code pageCount} pages of {@code pageSize}, or null when there is none yet.
     *
     * @throws IllegalArgumentException when the file is another device's or damaged
     */
    Saved load(int pageSize, int pageCount) {
        if (!Files.exists(path)) {
            return null;
        }
        ByteBuffer buf;
        try {
            buf = ByteBuffer.wrap(Files.readAllBytes(path));
        } catch (IOException e) {
            throw new IllegalArgumentException("state file " + path + " cannot be read: " + e.getMessage());
        }
        if (buf.remaining() < HEADER || buf.getLong(0) != MAGIC) {
            throw new IllegalArgumentException("state file " + path + " is not a simulated device's state");
        }
        int ps = buf.getInt(8);
        int pc = buf.getInt(12);
        if (ps != pageSize || pc != pageCount || buf.remaining() != HEADER + 4L * pc) {
            throw new IllegalArgumentException("state file " + path + " holds a device of " + pc + " pages of " + ps
                    + " bytes, this one has " + pageCount + " of " + pageSize);
        }
        long seed = buf.getLong(16);
        DeviceState state = DeviceState.of(buf.getInt(24));
        int[] versions = new int[pc];
        buf.position(HEADER);
        buf.asIntBuffer().get(versions);
        return new Saved(state, new PageImage(pageSize, seed, versions));
    }

    /** Writes the state: a new file renamed over the old, so a process killed in between leaves one whole. */
    void save(DeviceState state, PageImage image) {
        int[] versions = image.versions();
        ByteBuffer buf = ByteBuffer.allocate(HEADER + 4 * versions.length);
        buf.putLong(MAGIC).putInt(image.pageSize()).putInt(versions.length).putLong(image.seed())
                .putInt(state.value());
        buf.asIntBuffer().put(versions);
        Path next = path.resolveSibling(path.getFileName() + ".next");
        try {
            Files.write(next, buf.array());
            Files.move(next, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new UncheckedIOException("state file " + path + " cannot be written", e);
        }
    }
}
