package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.vertx.core.Context;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.testing.RawPeer;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.MigrationFlags;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.zip.CRC32C;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.Example;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import org.awaitility.Awaitility;

/**
 * A real destination agent fed a real device stream that was damaged on its way: bits flipped, cut short, lengths
 * changed, frames swapped, garbage in between. Whatever the damage, the agent closes the connection within its
 * timeouts, and the device holds either exactly the state that was sent (the damage changed nothing that matters)
 * or exactly the state it had, running; and no byte but those of the stream sent, in order, was ever written to it.
 */
class HostileStreamIT {

    private static final long SIZE = 256 << 10;
    private static final int CHUNK = 64 << 10;

    private static Vertx vertx;
    private static AgentVerticle agent;
    private static DeviceHandle device;
    private static byte[] stream;
    private static long sourceDigest;
    private static int attempt;

    /** What is done to the stream. */
    enum Damage { FLIP, CUT, LENGTH, SWAP, GARBAGE }

    record Case(Damage damage, int where, int what) {
    }

    @BeforeContainer
    static void start() throws Exception {
        vertx = Vertx.vertx();
        agent = LoopbackAgent.named("dst")
                .merge("migration", new JsonObject().put("progressTimeoutMillis", 1000))
                .merge("stream", new JsonObject().put("handshakeTimeoutMillis", 1000))
                .device(LoopbackAgent.simulated("gpu0", SIZE, 2)).start(vertx);
        device = agent.devices().find("gpu0");
        SimulatedDevice source = SimulatedDevice.builder("src", SIZE).pageSize(LoopbackAgent.PAGE)
                .flags(MigrationFlags.ALL).seed(1).build();
        sourceDigest = source.stateDigest();
        DataChannel ch = source.setState(DeviceState.STOP_COPY).orElseThrow();
        ByteBuffer all = ByteBuffer.allocate((int) source.fullStreamSize());
        while (ch.read(all) > 0) {
            // to the end
        }
        stream = all.array();
    }

    @AfterContainer
    static void stop() {
        vertx.close().await();
    }

    /** The whole valid conversation of one migration, frame by frame, up to the source's SECTION_END. */
    private static List<Buffer> conversation(String id) {
        List<Buffer> frames = new ArrayList<>();
        int seq = 0;
        JsonObject hello = new JsonObject().put("protocol", Frames.PROTOCOL_VERSION).put("migration", id)
                .put("sourceAgent", "raw").put("chunkSize", CHUNK)
                .put("devices", new JsonArray().add(new JsonObject().put("channel", 0).put("sourceDevice", "gpu0")
                        .put("targetDevice", "gpu0").put("flags", "STOP_COPY,P2P,PRE_COPY")
                        .put("identity", device.identity().toJson())));
        frames.add(Frames.control(FrameType.HELLO, 0, hello, seq++));
        frames.add(Frames.marker(0, VfioTag.DEV_SETUP_STATE, seq++));
        frames.add(Frames.marker(0, VfioTag.END_OF_STATE, seq++));
        int chunks = 0;
        for (int off = 0; off < stream.length; off += CHUNK) {
            frames.add(dataFrame(off, Math.min(CHUNK, stream.length - off), seq++));
            chunks++;
        }
        frames.add(Frames.marker(0, VfioTag.END_OF_STATE, seq++));
        frames.add(Frames.config(0, new byte[0], seq++));
        frames.add(Frames.marker(0, VfioTag.END_OF_STATE, seq++));
        frames.add(Frames.control(FrameType.SECTION_END, 0, new JsonObject().put("dataBytes", stream.length)
                .put("dataChunks", chunks), seq));
        return frames;
    }

    private static Buffer dataFrame(int from, int length, int seq) {
        ByteBuf buf = Unpooled.buffer(Frames.DATA_OFFSET + length);
        ByteBuffer view = buf.nioBuffer(0, Frames.DATA_OFFSET + length);
        view.put(Frames.DATA_OFFSET, stream, from, length);
        int crc = Frames.prepareData(view, length);
        Frames.sealHeader(view, 0, length, crc, seq);
        byte[] bytes = new byte[Frames.DATA_OFFSET + length];
        view.get(0, bytes);
        return Buffer.buffer(bytes);
    }

    private static Buffer damaged(List<Buffer> frames, Case c) {
        int frame = Math.floorMod(c.where(), frames.size());
        switch (c.damage()) {
            case FLIP -> {
                Buffer f = frames.get(frame);
                // Half the flips go to the headers, which are few of the bytes.
                int at = c.what() % 2 == 0 ? Math.floorMod(c.what() / 2, Math.min(f.length(), Frames.DATA_OFFSET))
                        : Math.floorMod(c.what() / 2, f.length());
                f.setByte(at, (byte) (f.getByte(at) ^ (1 << Math.floorMod(c.what(), 8))));
            }
            case LENGTH -> frames.get(frame).setInt(4, c.what());
            case SWAP -> {
                int other = Math.floorMod(c.what(), frames.size());
                Buffer t = frames.get(frame);
                frames.set(frame, frames.get(other));
                frames.set(other, t);
            }
            case GARBAGE -> {
                byte[] junk = new byte[1 + Math.floorMod(c.what(), 64)];
                new Random(c.what()).nextBytes(junk);
                frames.add(frame, Buffer.buffer(junk));
            }
            case CUT -> {
                Buffer all = Buffer.buffer();
                frames.forEach(all::appendBuffer);
                return all.slice(0, Math.floorMod(c.what(), all.length()));
            }
            default -> throw new IllegalStateException();
        }
        Buffer all = Buffer.buffer();
        frames.forEach(all::appendBuffer);
        return all;
    }

    @Provide
    Arbitrary<Case> cases() {
        return Combinators.combine(Arbitraries.of(Damage.class), Arbitraries.integers(), Arbitraries.integers())
                .as(Case::new);
    }

    private static long crcOfStreamPrefix(long length) {
        CRC32C crc = new CRC32C();
        crc.update(stream, 0, (int) length);
        return crc.getValue();
    }

    private static void onContext(Context context, Runnable action) {
        Promise<Void> done = Promise.promise();
        context.runOnContext(v -> {
            try {
                action.run();
                done.complete();
            } catch (RuntimeException e) {
                done.fail(e);
            }
        });
        done.future().await();
    }

    /**
     * The loader holds a data frame until its checksum held: a frame corrupted in its first half, whose first half
     * arrived and was decoded, has written nothing to the device when its end shows the damage.
     */
    @Example
    void aCorruptFrameIsNotWrittenEvenInPart() {
        device.submit(dc -> {
            dc.setState(DeviceState.RESUMING, DeviceState.ERROR, "test");
            return null;
        }).await();
        List<Throwable> failures = new ArrayList<>();
        SectionLoader loader = new SectionLoader("test", false, 4 << 20, new SectionLoader.Events() {
            @Override
            public void loaded(int channel, DeviceHandle d, long dataBytes) {
            }

            @Override
            public void failed(Throwable cause) {
                failures.add(cause);
            }
        });
        loader.open(0, device);
        FrameDecoder decoder = new FrameDecoder(
                Limits.DEFAULT, SectionLoader.listener(() -> loader, (type, ch, body) -> { }));
        Context context = vertx.getOrCreateContext();
        try {
            onContext(context, () -> decoder.feed(Buffer.buffer()
                    .appendBuffer(Frames.marker(0, VfioTag.DEV_SETUP_STATE, 0))
                    .appendBuffer(Frames.marker(0, VfioTag.END_OF_STATE, 1))));
            Buffer data = dataFrame(0, CHUNK, 2);
            data.setByte(Frames.DATA_OFFSET + 100, (byte) (data.getByte(Frames.DATA_OFFSET + 100) ^ 1));
            onContext(context, () -> decoder.feed(data.slice(0, data.length() / 2)));
            device.submit(dc -> null).await();
            assertThat(Sim.device(device).calls().resumeWrites()[0]).as("written before the frame ended").isZero();
            assertThatThrownBy(() -> onContext(context,
                    () -> decoder.feed(data.slice(data.length() / 2, data.length()))))
                    .hasMessageContaining("CRC32C mismatch");
            onContext(context, loader::abort);
            device.submit(dc -> null).await();
            assertThat(Sim.device(device).calls().resumeWrites()[0]).as("written after the damage showed").isZero();
        } finally {
            device.submit(dc -> {
                dc.reset("test");
                return null;
            }).await();
        }
    }

    @Property(tries = 100)
    void aDamagedStreamNeverPutsOtherBytesIntoTheDevice(@ForAll("cases") Case c) {
        String id = "m-hostile-" + attempt++;
        long before = Sim.digest(device);
        List<Buffer> frames = conversation(id);
        int next = frames.size();
        Buffer bytes = damaged(frames, c);
        RawPeer peer = RawPeer.connect(vertx, agent.streamPort());
        peer.send(bytes);
        if (c.damage() == Damage.CUT) {
            peer.close();
        }
        // The agent answers LOADED, or ABORT (and closes after a while, which a source does not wait for), or
        // closes the connection at once.
        Awaitility.await("the agent loads the stream or gives up on it").atMost(Duration.ofSeconds(20))
                .until(() -> peer.isClosed() || peer.received().stream()
                        .anyMatch(r -> r.type() == FrameType.LOADED || r.type() == FrameType.ABORT));
        boolean loaded = peer.received().stream().anyMatch(r -> r.type() == FrameType.LOADED);
        if (loaded) {
            peer.send(Frames.control(FrameType.START, 0, new JsonObject(), next));
        }
        Awaitility.await("the migration ends and the device is free").atMost(Duration.ofSeconds(20))
                .until(() -> device.owner() == null && agent.migrations().all().stream()
                        .noneMatch(r -> r.status().outcome() == MigrationStatus.Outcome.ACTIVE));
        if (!peer.isClosed()) {
            peer.close();
        }

        long[] written = Sim.device(device).calls().resumeWrites();
        assertThat(written[0]).isLessThanOrEqualTo(stream.length);
        assertThat(written[1]).as("the bytes written to the device are the stream's first %d", written[0])
                .isEqualTo(crcOfStreamPrefix(written[0]));
        long after = Sim.digest(device);
        DeviceState state = device.state().await();
        if (after == sourceDigest && state == DeviceState.RUNNING && written[0] == stream.length) {
            return;
        }
        assertThat(state).as("%s: the device is running again", c).isEqualTo(DeviceState.RUNNING);
        assertThat(after).as("%s: the device holds the state it had", c).isEqualTo(before);
    }
}
