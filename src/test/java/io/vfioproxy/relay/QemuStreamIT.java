package io.vfioproxy.relay;

import static org.assertj.core.api.Assertions.assertThat;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.migration.Checkpoint;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.testing.QemuVm;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.function.Supplier;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The observer on streams QEMU 7.2 wrote itself ({@code migrate "exec:cat > file"}), on every truncation of one,
 * and on the agents' own VFIO sections wrapped in QEMU's section framing.
 */
class QemuStreamIT {

    @TempDir
    Path dir;

    private static void needQemu() {
        String missing = QemuVm.unavailable();
        if (missing != null) {
            System.out.println("QemuStreamIT skipped: " + missing);
            Assumptions.abort(missing);
        }
    }

    /** Migrates {@code vm} into a file and returns QEMU's query-migrate. */
    private static JsonObject record(QemuVm vm, Path file) throws Exception {
        vm.migrationSetup(new JsonObject(), new JsonObject().put("max-bandwidth", 16L << 30));
        vm.execute("migrate", new JsonObject().put("uri", "exec:cat > " + file));
        JsonObject end = vm.migrationEnd(Duration.ofSeconds(120));
        assertThat(end.getString("status")).as(end.encode()).isEqualTo("completed");
        return end;
    }

    private static QemuStreamObserver parse(byte[] stream, long seed) {
        QemuStreamObserver o = new QemuStreamObserver(System::nanoTime);
        Random random = new Random(seed);
        for (int pos = 0; pos < stream.length; ) {
            int n = Math.min(stream.length - pos, 1 + random.nextInt(2 << 20));
            o.feed(Buffer.buffer(Arrays.copyOfRange(stream, pos, pos + n)));
            pos += n;
        }
        return o;
    }

    @Test
    void aStreamQemuWroteParsesToQemusOwnFigures() throws Exception {
        needQemu();
        Path file = dir.resolve("guest.savevm");
        JsonObject qemu;
        try (QemuVm vm = QemuVm.source(dir, "rec", 128, 24)) {
            qemu = record(vm, file);
        }
        byte[] stream = Files.readAllBytes(file);
        QemuStreamObserver o = parse(stream, 1);
        QemuStreamReport r = o.report();
        assertThat(r.note()).isNull();
        assertThat(o.endNote()).isNull();
        assertThat(r.complete()).isTrue();
        JsonObject ram = qemu.getJsonObject("ram");
        assertThat(r.normalPages()).isEqualTo(ram.getLong("normal"));
        assertThat(r.zeroPages()).isEqualTo(ram.getLong("duplicate"));
        assertThat((double) r.bytesByKind().get("ram")).isCloseTo(ram.getLong("transferred"),
                org.assertj.core.data.Percentage.withPercentage(0.1));
        long syncs = ram.getLong("dirty-sync-count");
        assertThat(r.passes()).isBetween(syncs - 2, syncs);
        assertThat(r.devices()).containsKeys("ram", "cpu", "apic", "timer");
        assertThat(r.devices().get("cpu").kind()).isEqualTo("device");
        assertThat(r.bytes()).isEqualTo(stream.length);
        // A stream read twice in other pieces gives the same figures.
        assertThat(parse(stream, 2).report().toJson().put("wireDowntimeMillis", 0).encode())
                .isEqualTo(r.toJson().put("wireDowntimeMillis", 0).encode());
    }

    @Test
    void everyTruncationOfAStreamQemuWroteEndsWithAClearNote() throws Exception {
        needQemu();
        Path file = dir.resolve("paused.savevm");
        try (QemuVm vm = QemuVm.paused(dir, "paused", 64)) {
            record(vm, file);
        }
        byte[] stream = Files.readAllBytes(file);
        QemuStreamObserver whole = parse(stream, 3);
        assertThat(whole.report().note()).isNull();
        long eof = whole.report().eofOffset();
        QemuStreamObserver o = new QemuStreamObserver(System::nanoTime);
        byte[] one = new byte[1];
        for (int i = 0; i < stream.length; i++) {
            one[0] = stream[i];
            o.feed(Buffer.buffer(one));
            String note = o.endNote();
            if (i == eof || i == stream.length - 1) {
                assertThat(note).as("cut after byte " + i).isNull();
            } else {
                assertThat(note).as("cut after byte " + i).startsWith("the stream ended at offset " + (i + 1) + " ");
            }
        }
        assertThat(o.report().toJson().put("wireDowntimeMillis", 0).encode())
                .isEqualTo(whole.report().toJson().put("wireDowntimeMillis", 0).encode());
    }

    @Test
    void theAgentsOwnVfioSectionsInQemusFramingParse() throws Exception {
        Vertx vertx = Vertx.vertx();
        try {
            AgentVerticle agent = LoopbackAgent.named("a").withoutApi()
                    .device(LoopbackAgent.simulated("gpu0", 8 << 20, 1)).start(vertx);
            DeviceHandle gpu = agent.devices().find("gpu0");
            Path file = dir.resolve("gpu0.vmp");
            onContext(vertx, () -> Checkpoint.save(vertx, gpu, file, 1 << 20, true));
            List<byte[]> records = sectionRecords(Files.readAllBytes(file));
            // setup, then the data and its END_OF_STATE, then DEV_CONFIG_STATE and END_OF_STATE.
            int setupEnd = 2;
            int configAt = records.size() - 2;
            String idstr = "0000:00:05.0/vfio";
            SavevmStream s = new SavevmStream().configuration("pc-i440fx-7.2");
            s.open(QemuFormat.QEMU_VM_SECTION_START, 7, idstr);
            records.subList(0, setupEnd).forEach(s::bytes);
            s.footer(7).part(QemuFormat.QEMU_VM_SECTION_END, 7);
            records.subList(setupEnd, configAt).forEach(s::bytes);
            s.footer(7).open(QemuFormat.QEMU_VM_SECTION_FULL, 7, idstr);
            // QEMU puts the VMM's VMState of the device after DEV_CONFIG_STATE; the agents put none.
            s.bytes(records.get(configAt)).bytes(new byte[] {1, 2, 3, 4, 5, 6}).bytes(records.get(configAt + 1));
            byte[] stream = s.footer(7).eof("{}").toByteArray();
            QemuStreamObserver o = parse(stream, 4);
            assertThat(o.report().note()).isNull();
            assertThat(o.report().complete()).isTrue();
            QemuStreamReport.Device vfio = o.report().devices().get(idstr);
            long data = records.stream().filter(r -> ByteBuffer.wrap(r).getLong() == VfioTag.DEV_DATA_STATE.value())
                    .mapToLong(r -> r.length - 16).sum();
            assertThat(vfio.stateBytes()).isEqualTo(data).isEqualTo(io.vfioproxy.testing.Sim.device(gpu)
                    .fullStreamSize());
            assertThat(vfio.sections()).isEqualTo(3);
        } finally {
            vertx.close().await();
        }
    }

    /** The SECTION payloads of a checkpoint file: the device's section content, record by record. */
    private static List<byte[]> sectionRecords(byte[] file) {
        List<byte[]> records = new ArrayList<>();
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        FrameDecoder decoder = new FrameDecoder(Limits.DEFAULT, new FrameDecoder.Listener() {
            @Override
            public void onControl(io.vfioproxy.stream.FrameType type, int channel, JsonObject body) {
            }

            @Override
            public void onMarker(int channel, VfioTag tag) {
                records.add(ByteBuffer.allocate(8).putLong(tag.value()).array());
            }

            @Override
            public void onConfig(int channel, Buffer blob) {
                records.add(ByteBuffer.allocate(8 + blob.length()).putLong(VfioTag.DEV_CONFIG_STATE.value())
                        .put(blob.getBytes()).array());
            }

            @Override
            public void onDataStart(int channel, long size) {
                data.reset();
                data.writeBytes(ByteBuffer.allocate(16).putLong(VfioTag.DEV_DATA_STATE.value()).putLong(size).array());
            }

            @Override
            public void onData(int channel, Buffer piece) {
                data.writeBytes(piece.getBytes());
            }

            @Override
            public void onDataEnd(int channel) {
                records.add(data.toByteArray());
            }
        });
        decoder.feed(Buffer.buffer(file));
        return records;
    }

    private static <T> T onContext(Vertx vertx, Supplier<Future<T>> job) {
        Context context = vertx.getOrCreateContext();
        Promise<T> result = Promise.promise();
        context.runOnContext(v -> job.get().onComplete(result));
        return result.future().await();
    }
}
