package io.vfioproxy.bench;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.internal.buffer.BufferInternal;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceController;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.MigrationFlags;
import java.nio.ByteBuffer;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * The cost of each pass the agents make over device data, per MiB, to set against the end-to-end numbers of
 * {@code bench} (docs/BENCHMARKS.md). Run: see docs/BENCHMARKS.md.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class DataPathBenchmark {

    private static final int MIB = 1 << 20;
    private static final long DEVICE = 64L << 20;

    private ByteBuffer chunk;
    private Buffer frames;
    private long decoded;
    private SimulatedDevice source;
    private DataChannel saving;
    private ByteBuffer stream;
    private SimulatedDevice destination;
    private DeviceController controller;
    private boolean p2p;

    @Setup
    public void setup() throws Exception {
        chunk = ByteBuffer.allocateDirect(MIB);
        for (int i = 0; i < MIB; i += 8) {
            chunk.putLong(i, i * 0x9E3779B97F4A7C15L);
        }
        // 16 data frames of 1 MiB, as they arrive on a socket.
        ByteBuf all = Unpooled.directBuffer(16 * (Frames.DATA_OFFSET + MIB));
        for (int seq = 0; seq < 16; seq++) {
            ByteBuffer frame = ByteBuffer.allocateDirect(Frames.DATA_OFFSET + MIB);
            frame.put(Frames.DATA_OFFSET, chunk, 0, MIB);
            int crc = Frames.prepareData(frame, MIB);
            Frames.sealHeader(frame, 0, MIB, crc, seq);
            all.writeBytes(frame);
        }
        frames = BufferInternal.buffer(all);

        source = SimulatedDevice.builder("src", 1L << 30).pageSize(4096).flags(MigrationFlags.ALL).seed(1).build();
        saving = source.setState(DeviceState.STOP_COPY).orElseThrow();

        SimulatedDevice whole = SimulatedDevice.builder("w", DEVICE).pageSize(4096).flags(MigrationFlags.ALL).seed(2).build();
        DataChannel ch = whole.setState(DeviceState.STOP_COPY).orElseThrow();
        stream = ByteBuffer.allocateDirect((int) whole.fullStreamSize());
        while (ch.read(stream) > 0) {
            // the whole stream
        }
        stream.flip();
        destination = SimulatedDevice.builder("dst", DEVICE).pageSize(4096).flags(MigrationFlags.ALL).seed(3).build();

        controller = new DeviceController(SimulatedDevice.builder("fsm", 1 << 20).pageSize(4096).flags(MigrationFlags.ALL).seed(4).build(), (d, from, to, cause, nanos) -> { });
    }

    /** CRC32C of a 1 MiB direct buffer: both agents do this once per byte. */
    @Benchmark
    public long crc32c1MiB() {
        CRC32C crc = new CRC32C();
        crc.update(chunk.duplicate());
        return crc.getValue();
    }

    /** The destination's decoder over 16 MiB of data frames arriving in 64 KiB reads (CRC32C included). */
    @Benchmark
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public long decode16MiB() {
        decoded = 0;
        FrameDecoder decoder = new FrameDecoder(Limits.DEFAULT, new FrameDecoder.Listener() {
            @Override
            public void onControl(FrameType type, int channel, JsonObject body) {
            }

            @Override
            public void onMarker(int channel, VfioTag tag) {
            }

            @Override
            public void onConfig(int channel, Buffer blob) {
            }

            @Override
            public void onDataStart(int channel, long size) {
            }

            @Override
            public void onData(int channel, Buffer piece) {
                decoded += piece.length();
            }

            @Override
            public void onDataEnd(int channel) {
            }
        });
        for (int pos = 0; pos < frames.length(); pos += 65536) {
            decoder.feed(frames.slice(pos, Math.min(frames.length(), pos + 65536)));
        }
        return decoded;
    }

    /** The simulated source device producing 1 MiB of its stop-copy stream (a real device's read()). */
    @Benchmark
    public int simulatedDeviceRead1MiB() throws VfioException {
        chunk.clear();
        int n = saving.read(chunk);
        if (n == 0) {
            saving.close();
            source.setState(DeviceState.RUNNING);
            saving = source.setState(DeviceState.STOP_COPY).orElseThrow();
        }
        return n;
    }

    /** The simulated destination device checking and loading a whole 64 MiB stream (a real device's write()). */
    @Benchmark
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public DeviceState simulatedDeviceWrite64MiB() throws VfioException {
        DataChannel ch = destination.setState(DeviceState.RESUMING).orElseThrow();
        ByteBuffer all = stream.duplicate();
        while (all.hasRemaining()) {
            ByteBuffer piece = all.slice(all.position(), Math.min(MIB, all.remaining()));
            ch.write(piece);
            all.position(all.position() + piece.capacity());
        }
        destination.setState(DeviceState.STOP);
        ch.close();
        return destination.state();
    }

    /** One state change through the QEMU-rules controller on the simulated device, without the event bus. */
    @Benchmark
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    public DeviceState stateTransition() throws VfioException {
        p2p = !p2p;
        controller.setState(p2p ? DeviceState.RUNNING_P2P : DeviceState.RUNNING, DeviceState.RUNNING, "bench");
        return controller.state();
    }
}
