package io.vfioproxy.lab;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceController;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.PrecopyInfo;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.device.linux.Discovery;
import io.vfioproxy.device.linux.FdHandoff;
import io.vfioproxy.device.linux.LabAccess;
import io.vfioproxy.device.linux.MttyRegisters;
import io.vfioproxy.device.linux.NativeDevice;
import io.vfioproxy.device.linux.VfioDeviceInfo;
import io.vfioproxy.device.linux.VfioOpen;
import io.vfioproxy.migration.Checkpoint;
import io.vfioproxy.migration.MigrationOptions;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.migration.MigrationStatus;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * Runs inside the kernel lab's guest (see KernelLabIT), against two real mtty mdevs: the agent's own code on the
 * real kernel uAPI. Prints one line per scenario, {@code LAB <name> OK <detail>} or {@code LAB <name> FAIL <why>},
 * then {@code LAB-DONE failures=N}. One JVM runs them all: a JVM starts slowly under emulation.
 */
public final class LabScenarios {

    /** One scenario: returns what it measured, throws when the kernel or the agent misbehaved. */
    @FunctionalInterface
    interface Scenario {
        String run() throws Exception;
    }

    private static int failures;
    private static final String MDEV0 = System.getenv("KLAB_MDEV0");
    private static final String MDEV1 = System.getenv("KLAB_MDEV1");
    private static final Discovery DISCOVERY = new Discovery();

    private LabScenarios() {
    }

    public static void main(String[] args) {
        run("discovery", LabScenarios::discovery);
        run("open-paths", LabScenarios::openPaths);
        run("precopy-info", LabScenarios::precopyInfo);
        run("invalid-arc", LabScenarios::invalidArc);
        run("save-restore", LabScenarios::saveRestore);
        run("migration", () -> migration(MigrationRequest.Mode.STOP_COPY, 0xC3));
        run("precopy-migration", () -> migration(MigrationRequest.Mode.PRECOPY, 0x3C));
        run("stopped-source-handback", LabScenarios::stoppedSourceHandback);
        run("truncated-stream", LabScenarios::truncatedStream);
        run("crash-recovery", LabScenarios::crashRecovery);
        run("commands", LabScenarios::commands);
        System.out.println("LAB-DONE failures=" + failures);
        System.exit(0);
    }

    private static void run(String name, Scenario scenario) {
        try {
            System.out.println("LAB " + name + " OK " + scenario.run());
        } catch (Throwable t) {
            failures++;
            System.out.println("LAB " + name + " FAIL " + t);
            t.printStackTrace(System.out);
        }
        System.out.flush();
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    private static NativeDevice openCdev(String uuid) throws Exception {
        VfioDeviceInfo info = DISCOVERY.resolve(uuid);
        return VfioOpen.cdev(uuid, "/dev/vfio/devices/" + info.cdev(), info.identity(0));
    }

    private static String discovery() throws Exception {
        List<String> seen = new ArrayList<>();
        for (String uuid : List.of(MDEV0, MDEV1)) {
            VfioDeviceInfo info = DISCOVERY.resolve(uuid);
            check(info.bus().equals("mdev") && info.mdevType().equals("mtty-2"), "mdev of type mtty-2: " + info);
            check(info.cdev().equals(System.getenv(uuid.equals(MDEV0) ? "KLAB_MDEV0_CDEV" : "KLAB_MDEV1_CDEV")),
                    "cdev of " + uuid + ": " + info.cdev());
            Discovery.MigrationProbe probe = DISCOVERY.probeMigration(info);
            String flags = probe.migration();
            check(flags.equals("STOP_COPY,P2P,PRE_COPY"), "flags of " + uuid + ": " + flags);
            check(probe.dataSize() > 0 && probe.dataSizeError() == null, "MIG_DATA_SIZE of " + uuid + ": " + probe);
            seen.add(info.name() + " group=" + info.iommuGroup() + " cdev=" + info.cdev() + " flags=" + flags);
        }
        check(DISCOVERY.list().size() >= 2, "both mdevs listed");
        return String.join("; ", seen);
    }

    private static String openPaths() throws Exception {
        VfioDeviceInfo info = DISCOVERY.resolve(MDEV1);
        String viaGroup;
        try (NativeDevice d = VfioOpen.group("g", info.iommuGroup(), MDEV1, info.identity(0))) {
            viaGroup = d.state() + "/" + d.migrationFlags();
        }
        String viaCdev;
        String viaHandoff;
        String probes;
        try (NativeDevice d = openCdev(MDEV1)) {
            viaCdev = d.state() + "/" + d.migrationFlags();
            // The lab measured: GET MIGRATION ok, SET MIGRATION EINVAL, GET|SET MIG_DEVICE_STATE ok,
            // GET MIG_DATA_SIZE ok, an unknown feature ENOTTY.
            int get = io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_GET;
            int set = io.vfioproxy.uapi.VfioUapi.VFIO_DEVICE_FEATURE_SET;
            boolean[] seen = {d.probe(1, get), d.probe(1, set), d.probe(2, get | set), d.probe(9, get), d.probe(99, get)};
            check(java.util.Arrays.equals(seen, new boolean[] {true, false, true, true, false}),
                    "PROBE results " + java.util.Arrays.toString(seen));
            probes = "PROBE as the lab measured it";
            int[] pair = FdHandoff.socketPair();
            FdHandoff.send(pair[0], deviceFd(d), MDEV1);
            FdHandoff.Received got = FdHandoff.receive(pair[1]);
            try (NativeDevice adopted = VfioOpen.adopt("h", got.fd(), DISCOVERY.resolve(got.label()).identity(0))) {
                viaHandoff = adopted.state() + "/" + adopted.identity().model();
            }
            closeFds(pair);
        }
        return "group: " + viaGroup + ", cdev: " + viaCdev + " (" + probes + "), handed-over fd: " + viaHandoff;
    }

    private static String precopyInfo() throws Exception {
        try (NativeDevice d = openCdev(MDEV0)) {
            List<String> arcs = new ArrayList<>();
            DeviceController c = new DeviceController(d, (dev, from, to, cause, nanos) -> arcs.add(from + ">" + to));
            DataChannel ch = c.setState(DeviceState.PRE_COPY, DeviceState.RUNNING, "lab").orElseThrow();
            PrecopyInfo first = ch.precopyInfo();
            check(first.initialBytes() > 0 && first.dirtyBytes() == 0, "initial pre-copy info " + first);
            ByteBuffer buf = ByteBuffer.allocateDirect(4096);
            int total = 0;
            String end;
            while (true) {
                try {
                    int n = ch.read(buf);
                    total += n;
                } catch (VfioException e) {
                    check(e.is(Errno.ENOMSG), "drained pre-copy read: " + e.getMessage());
                    end = "ENOMSG";
                    break;
                }
            }
            PrecopyInfo drained = ch.precopyInfo();
            check(drained.initialBytes() == 0, "initial bytes after reading: " + drained);
            c.setState(DeviceState.RUNNING, DeviceState.ERROR, "lab");
            check(d.state() == DeviceState.RUNNING, "back to RUNNING");
            return "PRE_COPY info " + first + ", read " + total + " bytes then " + end + ", info " + drained
                    + ", arcs " + arcs;
        }
    }

    private static String invalidArc() throws Exception {
        try (NativeDevice d = openCdev(MDEV0)) {
            DeviceController c = new DeviceController(d, (dev, from, to, cause, nanos) -> { });
            c.setState(DeviceState.STOP_COPY, DeviceState.RUNNING, "lab");
            String refused;
            try {
                c.setState(DeviceState.PRE_COPY, DeviceState.RUNNING, "lab");
                throw new AssertionError("STOP_COPY -> PRE_COPY was not refused");
            } catch (VfioException e) {
                check(e.is(Errno.EINVAL) && e.getMessage().contains("refused before the ioctl"), e.getMessage());
                refused = e.getMessage();
            }
            try {
                d.setState(DeviceState.PRE_COPY_P2P);
                throw new AssertionError("STOP_COPY -> PRE_COPY_P2P was not refused");
            } catch (VfioException e) {
                check(e.is(Errno.EINVAL) && e.getMessage().contains("refused before the ioctl"), e.getMessage());
            }
            check(d.state() == DeviceState.STOP_COPY, "the kernel still reports STOP_COPY");
            c.setState(DeviceState.RUNNING, DeviceState.ERROR, "lab");
            check(d.state() == DeviceState.RUNNING, "back to RUNNING");
            return refused;
        }
    }

    private static <T> T onContext(Vertx vertx, Supplier<Future<T>> job) {
        Context context = vertx.getOrCreateContext();
        Promise<T> result = Promise.promise();
        context.runOnContext(v -> job.get().onComplete(result));
        return result.future().await();
    }

    private static JsonObject nativeEntry(String name, String device) {
        return new JsonObject().put("name", name).put("backend", "native").put("device", device);
    }

    private static DeviceHandle open(Vertx vertx, JsonObject entry) {
        io.vfioproxy.device.DeviceRegistry registry = new io.vfioproxy.device.DeviceRegistry();
        vertx.deployVerticle(new io.vfioproxy.device.DeviceVerticle("lab", entry, (device, from, to, cause, nanos) -> { },
                registry)).await();
        return registry.all().get(0);
    }

    private static void scratch(DeviceHandle d, int value) {
        d.submit(c -> {
            MttyRegisters.writeScratch((NativeDevice) c.device(), value);
            return null;
        }).await();
    }

    private static int scratch(DeviceHandle d) {
        return d.submit(c -> MttyRegisters.readScratch((NativeDevice) c.device())).await();
    }

    private static String saveRestore() throws Exception {
        Vertx vertx = Vertx.vertx();
        try {
            DeviceHandle m0 = open(vertx, nativeEntry("m0", MDEV0));
            DeviceHandle m1 = open(vertx, nativeEntry("m1", "/dev/vfio/devices/" + System.getenv("KLAB_MDEV1_CDEV")));
            scratch(m0, 0x5A);
            scratch(m1, 0x00);
            Path file = Files.createTempFile("mtty", ".vmp");
            Checkpoint.Result saved = onContext(vertx, () -> Checkpoint.save(vertx, m0, file, 1 << 20, true));
            check(saved.deviceState() == DeviceState.RUNNING, "source resumed: " + saved);
            Checkpoint.Result restored = onContext(vertx, () -> Checkpoint.restore(vertx, m1, file,
                    MigrationOptions.fromJson(new JsonObject())));
            check(restored.deviceState() == DeviceState.RUNNING, "destination running: " + restored);
            int marker = scratch(m1);
            check(marker == 0x5A, "scratch register moved: 0x" + Integer.toHexString(marker));
            return "saved " + saved.dataBytes() + " bytes (" + Files.size(file) + " in the file), restored into m1, "
                    + "scratch register 0x5a arrived";
        } finally {
            vertx.close().await();
        }
    }

    private static String migration(MigrationRequest.Mode mode, int value) {
        Vertx vertx = Vertx.vertx();
        try {
            AgentVerticle dst = LoopbackAgent.named("dst").withoutApi().device(nativeEntry("mtty", MDEV1)).start(vertx);
            AgentVerticle src = LoopbackAgent.named("src").withoutApi().device(nativeEntry("mtty", MDEV0)).start(vertx);
            DeviceHandle from = src.devices().find("mtty");
            DeviceHandle to = dst.devices().find("mtty");
            scratch(from, value);
            scratch(to, 0x11);
            List<String> arcs = new java.util.concurrent.CopyOnWriteArrayList<>();
            vertx.eventBus().<JsonObject>consumer(io.vfioproxy.api.Events.DEVICE_STATE, m -> {
                if (m.body().getString("agent").equals("src")) {
                    arcs.add(m.body().getString("from") + ">" + m.body().getString("to"));
                }
            }).completion().await();
            MigrationService.Started started = onContext(vertx, () -> Future.succeededFuture(src.migrations().migrate(
                    new MigrationRequest("mtty", LoopbackAgent.endpoint(dst), "mtty", 0)
                            .withMode(mode))));
            MigrationStatus record = started.completion().await();
            check(record.outcome() == MigrationStatus.Outcome.COMPLETED, "completed: " + record.toJson());
            check(to.state().await() == DeviceState.RUNNING, "destination RUNNING");
            check(from.state().await() == DeviceState.STOP, "source STOP");
            int marker = scratch(to);
            check(marker == value, "scratch register moved: 0x" + Integer.toHexString(marker));
            if (mode == MigrationRequest.Mode.PRECOPY) {
                check(arcs.containsAll(List.of("RUNNING>PRE_COPY", "PRE_COPY>PRE_COPY_P2P", "PRE_COPY_P2P>STOP_COPY")),
                        "pre-copy arcs on the real device: " + arcs);
                // 96 bytes fit the downtime limit at any bandwidth: pre-copy switches over at once, not on its budget.
                check(record.switchoverReason().startsWith("converged") && record.switchoverReason().contains("even at"),
                        "switchover: " + record.switchoverReason());
            }
            String migrated = arcs.toString();
            from.reset("lab cleanup").await();
            return "migrated " + record.transfer().dataBytes() + " bytes agent to agent over loopback (" + record.mode().wireName()
                    + "), downtime " + Math.round(record.downtimeMillis()) + " ms, scratch register 0x"
                    + Integer.toHexString(value) + " arrived; source arcs " + migrated
                    + (record.switchoverReason() == null ? "" : "; " + record.switchoverReason());
        } finally {
            vertx.close().await();
        }
    }

    /**
     * A VM paused on the source (mtty in STOP) asked to pre-copy: it stop-copies and is never restarted. The
     * destination holds the loaded device in STOP and hands its fds to a consumer listening on a unix socket, as a
     * VMM would take back a PCI function; the consumer runs the device and finds the migrated scratch register.
     */
    private static String stoppedSourceHandback() throws Exception {
        Vertx vertx = Vertx.vertx();
        Path socket = Files.createTempDirectory("vmm").resolve("mtty.sock");
        int listening = FdHandoff.listen(socket.toString());
        try {
            AgentVerticle dst = LoopbackAgent.named("dst").withoutApi().device(nativeEntry("mtty", MDEV1)
                    .put("afterMigration", "stop").put("handback", socket.toString())).start(vertx);
            AgentVerticle src = LoopbackAgent.named("src").withoutApi().device(nativeEntry("mtty", MDEV0)).start(vertx);
            DeviceHandle from = src.devices().find("mtty");
            scratch(from, 0xA5);
            scratch(dst.devices().find("mtty"), 0x11);
            from.setState(DeviceState.STOP, DeviceState.RUNNING, "the VM paused").await();
            List<String> arcs = new java.util.concurrent.CopyOnWriteArrayList<>();
            vertx.eventBus().<JsonObject>consumer(io.vfioproxy.api.Events.DEVICE_STATE, m -> {
                if (m.body().getString("agent").equals("src")) {
                    arcs.add(m.body().getString("from") + ">" + m.body().getString("to"));
                }
            }).completion().await();
            java.util.concurrent.CompletableFuture<FdHandoff.Received> consumer =
                    java.util.concurrent.CompletableFuture.supplyAsync(() -> {
                        try {
                            return FdHandoff.accept(listening);
                        } catch (java.io.IOException e) {
                            throw new java.io.UncheckedIOException(e);
                        }
                    });
            MigrationStatus record = onContext(vertx, () -> Future.succeededFuture(src.migrations().migrate(
                    new MigrationRequest("mtty", LoopbackAgent.endpoint(dst), "mtty", 0)
                            .withMode(MigrationRequest.Mode.PRECOPY)))).completion().await();
            check(record.outcome() == MigrationStatus.Outcome.COMPLETED, "completed: " + record.toJson());
            check(record.mode() == MigrationRequest.Mode.STOP_COPY, "a stopped source stop-copies: " + record.mode());
            check(arcs.containsAll(List.of("STOP>STOP_COPY", "STOP_COPY>STOP"))
                    && arcs.stream().noneMatch(a -> a.endsWith(">RUNNING") || a.contains("PRE_COPY")),
                    "source arcs: " + arcs);
            FdHandoff.Received got = consumer.get(120, java.util.concurrent.TimeUnit.SECONDS);
            check(got.label().equals(MDEV1) && got.fds().length == 2, "handed back: " + got.label() + ", "
                    + got.fds().length + " fds");
            // The consumer's device: the agent closed its copies, and the device kept its loaded state.
            NativeDevice taken = VfioOpen.adopt("vmm", got.fds(), got.label(),
                    DISCOVERY.resolve(MDEV1).identity(0));
            try {
                check(taken.state() == DeviceState.STOP, "handed back in STOP: " + taken.state());
                taken.setState(DeviceState.RUNNING);
                int marker = MttyRegisters.readScratch(taken);
                check(marker == 0xA5, "scratch register in the handed-back device: 0x" + Integer.toHexString(marker));
            } finally {
                taken.close();
            }
            check(socket.toString().equals(dst.devices().find("mtty").handedOverTo()), "the agent says where it went");
            String migrated = arcs.toString();
            from.reset("lab cleanup").await();
            return "stopped source stop-copied " + record.transfer().dataBytes() + " bytes, arcs " + migrated
                    + "; destination handed " + got.fds().length + " fds to " + socket.getFileName()
                    + ", the consumer ran it and read 0xa5";
        } finally {
            FdHandoff.close(listening);
            vertx.close().await();
        }
    }

    private static String truncatedStream() throws Exception {
        byte[] stream;
        try (NativeDevice src = openCdev(MDEV0)) {
            DataChannel ch = src.setState(DeviceState.STOP_COPY).orElseThrow();
            ByteBuffer all = ByteBuffer.allocateDirect(64 << 10);
            while (ch.read(all) > 0) {
                // to the end of the stream
            }
            ch.close();
            src.setState(DeviceState.RUNNING);
            stream = new byte[all.flip().remaining()];
            all.get(stream);
        }
        try (NativeDevice dst = openCdev(MDEV1)) {
            DataChannel ch = dst.setState(DeviceState.RESUMING).orElseThrow();
            ch.write(ByteBuffer.allocateDirect(50).put(0, stream, 0, 50));
            String failure;
            try {
                dst.setState(DeviceState.STOP);
                throw new AssertionError("a truncated stream was accepted");
            } catch (VfioException e) {
                check(e.is(Errno.EINVAL), e.getMessage());
                failure = e.getMessage();
            }
            check(dst.state() == DeviceState.RESUMING, "stuck in RESUMING");
            ch.close();

            // The agent's way: the controller resets the device after the failed load, and reports the arc.
            List<String> reported = new ArrayList<>();
            DeviceController c = new DeviceController(dst, (dev, from, to, cause, nanos) ->
                    reported.add(from + ">" + to + " (" + cause + ")"));
            try {
                c.setState(DeviceState.STOP, DeviceState.ERROR, "lab load");
                throw new AssertionError("RESUMING -> STOP succeeded");
            } catch (VfioException e) {
                check(e.is(Errno.EINVAL), e.getMessage());
            }
            check(dst.state() == DeviceState.RUNNING, "RUNNING after the reset");
            check(reported.stream().anyMatch(r -> r.startsWith("RESUMING>RUNNING (reset:")), "reset reported: " + reported);
            return "stream of " + stream.length + " bytes cut at 50: " + failure + "; stuck in RESUMING; " + reported;
        }
    }

    /** A journal entry as an agent writes it before the step it names (docs/RELIABILITY.md). */
    private static void journaled(Path dir, String id, String role, String phase, String device) throws Exception {
        JsonObject entry = new JsonObject().put("id", id).put("role", role).put("agent", "node")
                .put("peer", "127.0.0.1:7070").put("phase", phase).put("committed", false)
                .put("devices", new JsonArray().add(new JsonObject().put("name", device).put("before", "RUNNING")))
                .put("updated", java.time.Instant.now().toString());
        Files.writeString(dir.resolve("node." + id + "." + role + ".json"), entry.encode());
    }

    /**
     * What an agent killed mid-migration leaves on a real kernel, and what the next agent makes of it: the source
     * mtty in PRE_COPY and the destination mtty in RESUMING with their fds closed (as the kernel closes a dead
     * process's; mtty keeps its state across close), and the journal entries written before each step. The agent
     * started on that journal runs both again, the source with its state.
     */
    private static String crashRecovery() throws Exception {
        try (NativeDevice src = openCdev(MDEV0)) {
            MttyRegisters.writeScratch(src, 0x77);
            DataChannel ch = src.setState(DeviceState.PRE_COPY).orElseThrow();
            ch.read(ByteBuffer.allocateDirect(16));
            ch.close();
        }
        try (NativeDevice dst = openCdev(MDEV1)) {
            dst.setState(DeviceState.RESUMING).orElseThrow().close();
        }
        String left;
        try (NativeDevice src = openCdev(MDEV0); NativeDevice dst = openCdev(MDEV1)) {
            left = "left in " + src.state() + " and " + dst.state();
        }
        Path journal = Files.createTempDirectory("journal");
        journaled(journal, "m-lab-src", "source", "PRECOPY", "src");
        journaled(journal, "m-lab-dst", "destination", "RESUMING", "dst");
        Vertx vertx = Vertx.vertx();
        try {
            AgentVerticle agent = LoopbackAgent.named("node").withoutApi().journal(journal)
                    .device(nativeEntry("src", MDEV0)).device(nativeEntry("dst", MDEV1)).start(vertx);
            DeviceHandle src = agent.devices().find("src");
            DeviceHandle dst = agent.devices().find("dst");
            check(src.state().await() == DeviceState.RUNNING, "source RUNNING after recovery");
            check(dst.state().await() == DeviceState.RUNNING, "destination RUNNING after recovery");
            int marker = scratch(src);
            check(marker == 0x77, "the source kept its state: scratch 0x" + Integer.toHexString(marker));
            String srcReport = agent.migrations().find("m-lab-src").status().error();
            String dstReport = agent.migrations().find("m-lab-dst").status().error();
            check(srcReport.contains("in phase PRECOPY") && dstReport.contains("were reset"),
                    "reported: " + srcReport + " / " + dstReport);
            try (var files = Files.list(journal)) {
                check(files.findAny().isEmpty(), "journal emptied");
            }
            return left + "; after the restart both RUNNING, source scratch 0x77 kept; " + srcReport;
        } finally {
            vertx.close().await();
        }
    }

    /** Runs the command line in this JVM and returns its exit code and what it printed. */
    private static String[] cli(String... args) {
        java.io.PrintStream saved = System.out;
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        System.setOut(new java.io.PrintStream(out, true, java.nio.charset.StandardCharsets.UTF_8));
        int exit;
        try {
            exit = io.vfioproxy.cli.Main.run(args);
        } finally {
            System.setOut(saved);
        }
        return new String[] {Integer.toString(exit), out.toString(java.nio.charset.StandardCharsets.UTF_8)};
    }

    /** The devices, save and restore commands on the real devices, as an operator runs them. */
    private static String commands() throws Exception {
        String[] listed = cli("devices", "--json");
        check(listed[0].equals("0"), "devices exit code " + listed[0]);
        JsonArray devices = new JsonObject(listed[1]).getJsonArray("devices");
        check(devices.stream().map(JsonObject.class::cast).filter(d -> d.getString("name").equals(MDEV0)
                || d.getString("name").equals(MDEV1)).allMatch(d -> d.getString("migration")
                .equals("STOP_COPY,P2P,PRE_COPY") && d.getString("bus").equals("mdev") && d.getString("kind").equals("mdev")
                && d.getString("destination").equals("runs it") && d.getLong("migrationDataSize", 0L) > 0),
                "devices --json: " + listed[1]);
        Path file = Files.createTempFile("cli", ".vmp");
        try (NativeDevice d = openCdev(MDEV0)) {
            MttyRegisters.writeScratch(d, 0x77);
        }
        String[] saved = cli("save", "--config", "/nonexistent.json", "--device", MDEV0, "--out", file.toString(),
                "--resume");
        check(saved[0].equals("0"), "save: " + saved[1]);
        String[] restored = cli("restore", "--config", "/nonexistent.json", "--device",
                "/dev/vfio/devices/" + System.getenv("KLAB_MDEV1_CDEV"), "--in", file.toString());
        check(restored[0].equals("0"), "restore: " + restored[1]);
        int marker;
        try (NativeDevice d = openCdev(MDEV1)) {
            marker = MttyRegisters.readScratch(d);
            check(d.state() == DeviceState.RUNNING, "restored device RUNNING");
        }
        check(marker == 0x77, "scratch register moved through the file: 0x" + Integer.toHexString(marker));
        return devices.size() + " devices listed; " + saved[1].strip() + "; " + restored[1].strip();
    }

    private static int deviceFd(NativeDevice d) {
        return LabAccess.fd(d);
    }

    private static void closeFds(int[] fds) {
        for (int fd : fds) {
            LabAccess.close(fd);
        }
    }
}
