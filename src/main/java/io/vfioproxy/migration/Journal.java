package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.migration.MigrationStatus.Role;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * The node's record of the migrations under way ({@code migration.journalDir}): one small file per migration and
 * role, written and synced before the engine does what the entry says may have happened (a source device leaves
 * RUNNING, a destination device enters RESUMING, the source commits, the destination holds the loaded state), and
 * removed once the migration ended with its devices safe. What a dead agent leaves here is what its successor
 * reconciles at start ({@link Reconciler}). Blocking: called on workers.
 */
public final class Journal {

    /** A device of a migration, and the state it had when the migration began (a source's rollback target). */
    public record Device(String name, String before) {
    }

    /** One migration's last recorded step. */
    public record Entry(String id, Role role, String agent, String peer, Phase phase, boolean committed,
            List<Device> devices, Instant updated) {

        public Entry {
            devices = List.copyOf(devices);
        }

        Entry at(Phase next, boolean commit) {
            return new Entry(id, role, agent, peer, next, committed || commit, devices, Instant.now());
        }

        JsonObject toJson() {
            return new JsonObject().put("id", id).put("role", role.name().toLowerCase()).put("agent", agent)
                    .put("peer", peer).put("phase", phase.name()).put("committed", committed)
                    .put("devices", new JsonArray(devices.stream().map(d -> new JsonObject().put("name", d.name())
                            .put("before", d.before())).toList()))
                    .put("updated", updated.toString());
        }

        static Entry fromJson(JsonObject j) {
            List<Device> devices = new ArrayList<>();
            j.getJsonArray("devices").forEach(d -> devices.add(new Device(require(((JsonObject) d).getString("name"),
                    "devices[].name"), ((JsonObject) d).getString("before"))));
            return new Entry(require(j.getString("id"), "id"), Role.valueOf(j.getString("role").toUpperCase()),
                    j.getString("agent"), j.getString("peer"), Phase.valueOf(j.getString("phase")),
                    j.getBoolean("committed"), devices, Instant.parse(j.getString("updated")));
        }

        private static String require(String v, String key) {
            if (v == null || v.isBlank()) {
                throw new IllegalArgumentException("'" + key + "' is missing");
            }
            return v;
        }
    }

    /** A file in the journal that could not be read, and why; it is left where it is for the operator. */
    public record Unreadable(Path file, String reason) {
    }

    /** What the journal held when read. */
    public record Contents(List<Entry> entries, List<Unreadable> unreadable) {
    }

    private static final String SUFFIX = ".json";

    private final Path dir;

    /** A journal in {@code dir}; null keeps none (the demo, the bench, tests that need none). */
    public Journal(Path dir) {
        this.dir = dir;
    }

    public boolean enabled() {
        return dir != null;
    }

    public Path dir() {
        return dir;
    }

    /** Creates the directory; fails naming it when it cannot be made or written. */
    public void open() {
        if (dir == null) {
            return;
        }
        try {
            Files.createDirectories(dir);
            if (!Files.isWritable(dir)) {
                throw new IOException("not writable");
            }
        } catch (IOException e) {
            throw new IllegalArgumentException("journal directory " + dir + " (migration.journalDir) cannot be "
                    + "used: " + e.getMessage());
        }
    }

    /** The entry's file: agent, migration and role, with only what is safe in a file name. */
    private Path file(Entry e) {
        // An agent migrating to itself, or two agents sharing the directory, keep apart by agent and role; ids are
        // the agents' own ("m-" and a UUID) or a peer's checked to at most 128 characters.
        return dir.resolve(e.agent().replaceAll("[^A-Za-z0-9._-]", "_") + "." + e.id().replaceAll("[^A-Za-z0-9._-]",
                "_") + "." + e.role().name().toLowerCase() + SUFFIX);
    }

    /** Writes {@code entry} so that it survives the process and the node: a new file, synced, renamed in place. */
    void write(Entry entry) throws IOException {
        if (dir == null) {
            return;
        }
        Path target = file(entry);
        Path next = target.resolveSibling(target.getFileName() + ".next");
        byte[] bytes = entry.toJson().encode().getBytes(StandardCharsets.UTF_8);
        try (FileChannel ch = FileChannel.open(next, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer buf = ByteBuffer.wrap(bytes);
            while (buf.hasRemaining()) {
                ch.write(buf);
            }
            ch.force(true);
        }
        try {
            Files.move(next, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(next, target, StandardCopyOption.REPLACE_EXISTING);
        }
        syncDirectory();
    }

    /** Forgets the migration: it ended and its devices are safe. */
    void remove(Entry entry) throws IOException {
        if (dir == null) {
            return;
        }
        Files.deleteIfExists(file(entry));
        syncDirectory();
    }

    private void syncDirectory() throws IOException {
        // The rename and the removal are the directory's: sync it too, or a crash of the node may undo them.
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true);
        }
    }

    /** The entries of one migration, written in order on workers of the migration's context. */
    Writer writer(Vertx vertx, Entry first) {
        return new Writer(vertx, first);
    }

    /** Writes one migration's entries in order; a later write waits for the one before it. */
    final class Writer {
        private final Vertx vertx;
        private Entry entry;
        private Future<Void> last = Future.succeededFuture();

        private Writer(Vertx vertx, Entry first) {
            this.vertx = vertx;
            this.entry = first;
        }

        /**
         * Records {@code phase} (and the commit, once {@code commit}); completes once the entry is on disk. Callers
         * that must not act before it is wait for it; the rest let it go.
         */
        Future<Void> record(Phase phase, boolean commit) {
            if (dir == null) {
                return Future.succeededFuture();
            }
            entry = entry.at(phase, commit);
            Entry e = entry;
            last = last.transform(ignored -> vertx.executeBlocking(() -> {
                write(e);
                return null;
            }));
            return last;
        }

        /** Removes the entry once every write before is done. */
        Future<Void> forget() {
            if (dir == null) {
                return Future.succeededFuture();
            }
            last = last.transform(ignored -> vertx.executeBlocking(() -> {
                remove(entry);
                return null;
            }));
            return last;
        }
    }

    /** Every entry left, and every file that could not be read. */
    public Contents read() {
        List<Entry> entries = new ArrayList<>();
        List<Unreadable> unreadable = new ArrayList<>();
        if (dir == null || !Files.isDirectory(dir)) {
            return new Contents(entries, unreadable);
        }
        try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*" + SUFFIX)) {
            for (Path f : files) {
                try {
                    entries.add(Entry.fromJson(new JsonObject(Files.readString(f))));
                } catch (IOException | DecodeException | IllegalArgumentException | NullPointerException
                        | ClassCastException | java.time.format.DateTimeParseException e) {
                    unreadable.add(new Unreadable(f, e.getMessage() == null ? e.toString() : e.getMessage()));
                }
            }
        } catch (IOException e) {
            unreadable.add(new Unreadable(dir, e.getMessage()));
        }
        return new Contents(entries, unreadable);
    }
}
