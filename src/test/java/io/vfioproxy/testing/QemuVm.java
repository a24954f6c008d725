package io.vfioproxy.testing;

import static org.awaitility.Awaitility.await;

import io.vertx.core.json.JsonObject;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A small QEMU guest for migration tests, with Debian's qemu-system-x86 (7.2): the kernel lab's bzImage and an
 * initramfs of static busybox whose init fills the guest's memory with random data (src/test/resources/qemu-guest).
 * A source boots and fills; a destination waits with {@code -incoming defer}. Both have the same machine, so one
 * can migrate to the other. Controlled through QMP.
 */
public final class QemuVm implements AutoCloseable {

    private static final Path KERNEL = Path.of("").toAbsolutePath().resolveSibling("shared").resolve("kernel-lab")
            .resolve("bzImage");
    private static Path initrd;

    private final Process process;
    private final Path log;
    private final Qmp qmp;
    private final String name;
    private final Path trace;

    private QemuVm(String name, Process process, Path log, Qmp qmp) {
        this.trace = log.resolveSibling(name + "-trace.log");
        this.name = name;
        this.process = process;
        this.log = log;
        this.qmp = qmp;
    }

    /** Why QEMU guests cannot run here, or null when they can. */
    public static String unavailable() {
        if (!Files.isRegularFile(KERNEL)) {
            return "no kernel at " + KERNEL + " (the kernel lab's bzImage)";
        }
        for (String tool : List.of("qemu-system-x86_64", "cpio", "gzip")) {
            if (!onPath(tool)) {
                return tool + " is not installed (apt-get install qemu-system-x86 cpio busybox-static)";
            }
        }
        if (!Files.isExecutable(Path.of("/bin/busybox"))) {
            return "/bin/busybox is not installed (apt-get install busybox-static)";
        }
        return null;
    }

    private static boolean onPath(String tool) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            if (Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }

    /** The initramfs, built once per JVM. */
    private static synchronized Path initrd() throws IOException, InterruptedException {
        if (initrd != null) {
            return initrd;
        }
        Path stage = Files.createTempDirectory("vmp-guest");
        for (String d : List.of("bin", "proc", "sys", "dev", "fill")) {
            Files.createDirectories(stage.resolve(d));
        }
        Files.copy(Path.of("/bin/busybox"), stage.resolve("bin/busybox"));
        try (InputStream init = QemuVm.class.getResourceAsStream("/qemu-guest/init")) {
            Files.copy(init, stage.resolve("init"), StandardCopyOption.REPLACE_EXISTING);
        }
        stage.resolve("init").toFile().setExecutable(true, false);
        Path out = Files.createTempFile("vmp-guest", ".cpio.gz");
        Process p = new ProcessBuilder("sh", "-c", "cd '" + stage + "' && find . | cpio -o -H newc --quiet | gzip -1 > '"
                + out + "'").inheritIO().start();
        if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IOException("building the guest's initramfs failed");
        }
        initrd = out;
        return out;
    }

    private static QemuVm start(Path dir, String name, int memoryMiB, int fillMiB, boolean incoming)
            throws IOException, InterruptedException {
        return start(dir, name, memoryMiB, fillMiB, incoming, List.of());
    }

    private static QemuVm start(Path dir, String name, int memoryMiB, int fillMiB, boolean incoming,
            List<String> extra) throws IOException, InterruptedException {
        Path qmpPath = dir.resolve(name + "-qmp.sock");
        Path log = dir.resolve(name + "-serial.log");
        List<String> cmd = new ArrayList<>(List.of("qemu-system-x86_64", "-machine", "pc", "-accel", "tcg",
                "-m", Integer.toString(memoryMiB), "-smp", "1", "-no-reboot", "-display", "none", "-monitor", "none",
                "-kernel", KERNEL.toString(), "-initrd", initrd().toString(),
                "-append", "console=ttyS0 quiet panic=-1 fill=" + fillMiB,
                "-serial", "file:" + log, "-qmp", "unix:" + qmpPath + ",server=on,wait=off"));
        if (incoming) {
            cmd.addAll(List.of("-incoming", "defer"));
        } else {
            // QEMU's own count of what each multifd channel sent, written as each channel's thread ends.
            cmd.addAll(List.of("-trace", "multifd_send_thread_end", "-D", dir.resolve(name + "-trace.log").toString()));
        }
        cmd.addAll(extra);
        Process process = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(dir.resolve(name + "-qemu.log").toFile()).start();
        await(name + "'s QMP socket").atMost(Duration.ofSeconds(60))
                .until(() -> Files.exists(qmpPath) || !process.isAlive());
        if (!process.isAlive()) {
            throw new IOException("QEMU " + name + " exited: " + Files.readString(dir.resolve(name + "-qemu.log")));
        }
        return new QemuVm(name, process, log, Qmp.connect(qmpPath));
    }

    /** A guest that boots and fills {@code fillMiB} of its memory with random data. */
    public static QemuVm source(Path dir, String name, int memoryMiB, int fillMiB)
            throws IOException, InterruptedException {
        QemuVm vm = start(dir, name, memoryMiB, fillMiB, false);
        await(name + " filled its memory").atMost(Duration.ofSeconds(240))
                .until(() -> Files.exists(vm.log) && Files.readString(vm.log).contains("GUEST-FILLED"));
        return vm;
    }

    /**
     * A guest that never ran ({@code -S}): its memory is the firmware's and zeroes, so its migration stream is
     * small (about a megabyte) and has every kind of section.
     */
    public static QemuVm paused(Path dir, String name, int memoryMiB) throws IOException, InterruptedException {
        return start(dir, name, memoryMiB, 0, false, List.of("-S"));
    }

    /** A guest of the same machine that waits for an incoming migration ({@code migrate-incoming}). */
    public static QemuVm destination(Path dir, String name, int memoryMiB) throws IOException, InterruptedException {
        return start(dir, name, memoryMiB, 0, true);
    }

    public JsonObject execute(String command, JsonObject arguments) throws IOException {
        return qmp.execute(command, arguments);
    }

    public JsonObject execute(String command) throws IOException {
        return qmp.execute(command);
    }

    /** query-migrate once the migration ended (completed, failed or cancelled). */
    public JsonObject migrationEnd(Duration limit) {
        return await(name + "'s migration ends").atMost(limit).pollInterval(Duration.ofMillis(100))
                .until(() -> execute("query-migrate"), m -> List.of("completed", "failed", "cancelled")
                        .contains(m.getString("status", "")));
    }

    /** Bytes of QEMU's trace log so far: where the next migration's lines begin. */
    public long traceMark() throws IOException {
        return Files.exists(trace) ? Files.size(trace) : 0;
    }

    /**
     * QEMU's own count of the pages each multifd channel sent in the migration whose trace lines begin at
     * {@code mark} (trace event multifd_send_thread_end: "channel N packets P normal pages M"), by channel id; each
     * value is {packets, pages}.
     */
    public java.util.Map<Integer, long[]> multifdSent(long mark) throws IOException {
        java.util.Map<Integer, long[]> sent = new java.util.TreeMap<>();
        String text = Files.readString(trace);
        java.util.regex.Matcher m = java.util.regex.Pattern.compile(
                "multifd_send_thread_end channel (\\d+) packets (\\d+) normal pages (\\d+)")
                .matcher(text.substring((int) Math.min(mark, text.length())));
        while (m.find()) {
            sent.put(Integer.parseInt(m.group(1)), new long[] {Long.parseLong(m.group(2)),
                Long.parseLong(m.group(3))});
        }
        return sent;
    }

    /** "running", "paused", "postmigrate", "inmigrate", ... */
    public String status() throws IOException {
        return execute("query-status").getString("status");
    }

    /** Sets migration capabilities (multifd, ...) and parameters. */
    public void migrationSetup(JsonObject capabilities, JsonObject parameters) throws IOException {
        io.vertx.core.json.JsonArray caps = new io.vertx.core.json.JsonArray();
        capabilities.forEach(e -> caps.add(new JsonObject().put("capability", e.getKey()).put("state", e.getValue())));
        if (!caps.isEmpty()) {
            execute("migrate-set-capabilities", new JsonObject().put("capabilities", caps));
        }
        if (!parameters.isEmpty()) {
            execute("migrate-set-parameters", parameters);
        }
    }

    @Override
    public void close() throws IOException, InterruptedException {
        try {
            qmp.execute("quit");
        } catch (IOException e) {
            // Already gone.
        }
        qmp.close();
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }
}
