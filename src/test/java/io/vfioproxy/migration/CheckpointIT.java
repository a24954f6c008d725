package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.cli.Main;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/** Saving a device's state to a file and loading it back, with every check a migration has. */
@ExtendWith(NoBufferLeaks.class)
class CheckpointIT {

    private static final long SIZE = 32 << 20;

    @TempDir
    Path dir;

    private Vertx vertx;
    private AgentVerticle agent;
    private DeviceHandle a;
    private DeviceHandle b;
    private DeviceHandle small;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        agent = LoopbackAgent.named("node")
                .device(LoopbackAgent.simulated("a", SIZE, 1))
                .device(LoopbackAgent.simulated("b", SIZE, 2))
                .device(LoopbackAgent.simulated("small", SIZE / 2, 3)).start(vertx);
        a = agent.devices().find("a");
        b = agent.devices().find("b");
        small = agent.devices().find("small");
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    private <T> T onContext(Supplier<Future<T>> job) {
        Context context = vertx.getOrCreateContext();
        Promise<T> result = Promise.promise();
        context.runOnContext(v -> job.get().onComplete(result));
        return result.future().await();
    }

    private Path save(DeviceHandle d, boolean resume) {
        Path file = dir.resolve(d.name() + ".vmp");
        onContext(() -> Checkpoint.save(vertx, d, file, 1 << 20, resume));
        return file;
    }

    private Checkpoint.Result restore(DeviceHandle d, Path file) {
        return onContext(() -> Checkpoint.restore(vertx, d, file, MigrationOptions.fromJson(new JsonObject())));
    }

    @Test
    void savesAndRestoresIntoAnotherDevice() throws Exception {
        Sim.device(a).dirtyPages(500, 9);
        long digest = Sim.digest(a);
        Path file = save(a, false);
        assertThat(a.state().await()).isEqualTo(DeviceState.STOP);
        assertThat(Files.size(file)).isGreaterThan(SIZE);
        Checkpoint.Result r = restore(b, file);
        assertThat(r.deviceState()).isEqualTo(DeviceState.RUNNING);
        assertThat(r.dataBytes()).isEqualTo(Sim.device(a).fullStreamSize());
        assertThat(Sim.digest(b)).isEqualTo(digest);
        assertThat(b.owner()).isNull();
    }

    @Test
    void resumeLeavesTheSourceRunning() {
        save(a, true);
        assertThat(a.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(a.owner()).isNull();
    }

    @Test
    void aFileOfAnotherKindOfDeviceIsRefusedBeforeTheDeviceIsTouched() {
        Path file = save(a, true);
        assertThatThrownBy(() -> restore(small, file))
                .hasMessageContaining("checkpoint " + file + " cannot be restored: device small cannot load the state "
                        + "of a: source is sim-4096x8192 (simulated), destination is sim-4096x4096 (simulated)");
        assertThat(small.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(small.owner()).isNull();
    }

    @Test
    void aCorruptedFileFailsItsChecksumAndTheDeviceIsReset() throws Exception {
        long before = Sim.digest(b);
        Path file = save(a, true);
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            long at = 5 * (Frames.DATA_OFFSET + (1 << 20)) + 12345;
            f.seek(at);
            int v = f.read();
            f.seek(at);
            f.write(v ^ 0x40);
        }
        assertThatThrownBy(() -> restore(b, file)).hasMessageContaining("CRC32C mismatch");
        assertThat(b.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(b)).isEqualTo(before);
        assertThat(b.owner()).isNull();
    }

    @Test
    void aTruncatedFileIsReportedAndTheDeviceIsReset() throws Exception {
        Path file = save(a, true);
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(f.length() / 2);
        }
        assertThatThrownBy(() -> restore(b, file)).hasMessageContaining("truncated checkpoint: " + file + " ends in frame");
        assertThat(b.state().await()).isEqualTo(DeviceState.RUNNING);
    }

    @Test
    void aFailedSaveLeavesTheDeviceRunningAndNoFile() {
        Sim.device(a).faults().failReadAt(3 << 20, io.vfioproxy.uapi.Errno.EIO);
        Path file = dir.resolve("failed.vmp");
        assertThatThrownBy(() -> onContext(() -> Checkpoint.save(vertx, a, file, 1 << 20, false)))
                .hasMessageContaining("saving a to " + file + " failed").hasMessageContaining("EIO");
        assertThat(a.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(file).doesNotExist();
    }

    @Test
    void saveAndRestoreCommandsWorkOnConfiguredDevices() throws Exception {
        Path conf = dir.resolve("agent.json");
        Files.writeString(conf, LoopbackAgent.named("cli").device(LoopbackAgent.simulated("x", SIZE, 1))
                .device(LoopbackAgent.simulated("y", SIZE, 2)).device(LoopbackAgent.simulated("z", SIZE / 2, 3)).config()
                .encode());
        Path file = dir.resolve("x.vmp");
        assertThat(Main.run("save", "--config", conf.toString(), "--device", "x", "--out", file.toString())).isZero();
        assertThat(file).exists();
        assertThat(Main.run("restore", "--config", conf.toString(), "--device", "y", "--in", file.toString())).isZero();
        assertThat(Main.run("restore", "--config", conf.toString(), "--device", "z", "--in", file.toString())).isOne();
        Path missing = dir.resolve("missing.vmp");
        assertThat(Main.run("restore", "--config", conf.toString(), "--device", "y", "--in", missing.toString())).isOne();
        assertThat(missing).doesNotExist();
        Path empty = Files.createFile(dir.resolve("empty.vmp"));
        assertThatThrownBy(() -> restore(b, empty)).hasMessageContaining(empty + " is not a checkpoint: it is empty");
        assertThat(b.state().await()).isEqualTo(DeviceState.RUNNING);
    }
}
