package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.api.Events;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.testing.EventLog;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.RawPeer;
import io.vfioproxy.testing.Sim;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.MigrationFlags;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * A real destination agent fed hand-made frames over a real TCP connection: every malformed input ends in a clear
 * error sent back to the peer, a closed connection and a reset device.
 */
@ExtendWith(NoBufferLeaks.class)
class DestinationProtocolIT {

    private static final long SIZE = 4 << 20;

    private Vertx vertx;
    private AgentVerticle agent;
    private DeviceHandle device;
    private List<JsonObject> deviceEvents;
    private RawPeer peer;
    private int seq;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        deviceEvents = EventLog.record(vertx, Events.DEVICE_STATE);
        agent = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", SIZE, 2)).start(vertx);
        device = agent.devices().find("gpu0");
        peer = RawPeer.connect(vertx, agent.streamPort());
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    private JsonObject hello(String target, String model) {
        return new JsonObject().put("protocol", Frames.PROTOCOL_VERSION).put("migration", "m-test").put("sourceAgent", "raw")
                .put("chunkSize", 1 << 20)
                .put("devices", new JsonArray().add(new JsonObject().put("channel", 0).put("sourceDevice", "gpu0")
                        .put("targetDevice", target).put("flags", "STOP_COPY,P2P,PRE_COPY")
                        .put("identity", new JsonObject().put("backend", "simulated").put("model", model)
                                .put("driver", "simulated").put("stateSize", SIZE))));
    }

    private String model() {
        return device.identity().model();
    }

    private void handshake() {
        peer.send(Frames.control(FrameType.HELLO, 0, hello("gpu0", model()), seq++));
        peer.await(FrameType.ACCEPT);
        assertThat(device.state().await()).isEqualTo(DeviceState.RESUMING);
        peer.send(Frames.marker(0, VfioTag.DEV_SETUP_STATE, seq++));
        peer.send(Frames.marker(0, VfioTag.END_OF_STATE, seq++));
    }

    /** A valid stream of a device like the agent's, to feed real data. */
    private static byte[] deviceStream() throws Exception {
        SimulatedDevice source = SimulatedDevice.builder("src", SIZE).pageSize(LoopbackAgent.PAGE).flags(MigrationFlags.ALL).seed(1).build();
        DataChannel ch = source.setState(DeviceState.STOP_COPY).orElseThrow();
        ByteBuffer all = ByteBuffer.allocate((int) source.fullStreamSize());
        while (ch.read(all) > 0) {
            // read to the end
        }
        return all.array();
    }

    private Buffer dataFrame(byte[] stream, int from, int length) {
        ByteBuf buf = Unpooled.buffer(Frames.DATA_OFFSET + length);
        ByteBuffer view = buf.nioBuffer(0, Frames.DATA_OFFSET + length);
        view.put(Frames.DATA_OFFSET, stream, from, length);
        int crc = Frames.prepareData(view, length);
        Frames.sealHeader(view, 0, length, crc, seq++);
        byte[] bytes = new byte[Frames.DATA_OFFSET + length];
        view.get(0, bytes);
        return Buffer.buffer(bytes);
    }

    /** The agent told the peer why, closed the connection and reset the device. */
    private void assertAbortedAndReset(String reasonPart) {
        JsonObject abort = peer.await(FrameType.ABORT);
        assertThat(abort.getString("reason")).contains(reasonPart);
        peer.awaitClosed();
        await("the migration is recorded as failed").atMost(Duration.ofSeconds(10)).until(() -> {
            MigrationRecord r = agent.migrations().find("m-test");
            return r != null && r.status().outcome() == MigrationStatus.Outcome.FAILED && r.toJson().containsKey("deviceState");
        });
        MigrationRecord record = agent.migrations().find("m-test");
        assertThat(record.status().error()).contains(reasonPart);
        assertThat(record.toJson().getString("deviceState")).isEqualTo("RUNNING");
        assertThat(device.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(device.owner()).isNull();
        assertThat(deviceEvents).anyMatch(e -> e.getString("to").equals("RUNNING")
                && e.getString("cause").startsWith("reset:"));
    }

    @Test
    void unknownFrameType() {
        handshake();
        Buffer frame = Frames.marker(0, VfioTag.END_OF_STATE, seq++);
        frame.setByte(2, (byte) 0x55);
        peer.send(frame);
        assertAbortedAndReset("frame 3: unknown frame type 0x55");
    }

    @Test
    void oversizedLength() {
        handshake();
        Buffer header = Frames.marker(0, VfioTag.END_OF_STATE, seq++).slice(0, Frames.HEADER_SIZE).copy();
        header.setInt(4, 100 << 20);
        peer.send(header);
        assertAbortedAndReset("SECTION payload length 104857600 exceeds the limit of 4194320 bytes");
    }

    @Test
    void badChecksum() throws Exception {
        handshake();
        byte[] stream = deviceStream();
        Buffer frame = dataFrame(stream, 0, 1 << 20);
        frame.setInt(8, frame.getInt(8) ^ 1);
        peer.send(frame);
        assertAbortedAndReset("frame 3: SECTION CRC32C mismatch");
    }

    @Test
    void unknownTag() {
        handshake();
        Buffer frame = Frames.marker(0, VfioTag.END_OF_STATE, seq++);
        frame.setLong(Frames.HEADER_SIZE, 0xffffffffef1000ffL);
        peer.send(frame);
        assertAbortedAndReset("unknown VFIO tag 0xffffffffef1000ff");
    }

    @Test
    void qemu10sConfigLoadReadyTagIsNamedAndRefused() {
        handshake();
        peer.send(Frames.marker(0, VfioTag.DEV_CONFIG_LOAD_READY, seq++));
        assertAbortedAndReset("DEV_CONFIG_LOAD_READY on channel 0: QEMU 10's multifd device-state tag");
    }

    @Test
    void initDataSentNeedsTheSwitchoverAckTheDestinationAccepted() {
        // This HELLO offers no features: the ACCEPT takes none, and DEV_INIT_DATA_SENT is a protocol error.
        handshake();
        assertThat(peer.await(FrameType.ACCEPT).getJsonArray("features")).isEmpty();
        peer.send(Frames.marker(0, VfioTag.DEV_INIT_DATA_SENT, seq++));
        assertAbortedAndReset("DEV_INIT_DATA_SENT on channel 0: sent without the switchover acknowledgement");
    }

    @Test
    void theSwitchoverAckIsTakenWhenOfferedAndUnknownFeaturesAreNot() {
        peer.send(Frames.control(FrameType.HELLO, 0, hello("gpu0", model()).put("mode", "precopy")
                .put("features", new JsonArray().add("switchover-ack").add("teleport")), seq++));
        assertThat(peer.await(FrameType.ACCEPT).getJsonArray("features")).containsExactly("switchover-ack");
    }

    @Test
    void deviceConfigBytesAreNotWhatAnAgentSends() {
        handshake();
        peer.send(Frames.marker(0, VfioTag.END_OF_STATE, seq++));
        peer.send(Frames.config(0, new byte[] {1, 2, 3}, seq++));
        assertAbortedAndReset("DEV_CONFIG_STATE on channel 0 carries 3 bytes of device config");
    }

    @Test
    void dataBeforeSetupBreaksTheSectionGrammar() throws Exception {
        peer.send(Frames.control(FrameType.HELLO, 0, hello("gpu0", model()), seq++));
        peer.await(FrameType.ACCEPT);
        peer.send(dataFrame(deviceStream(), 0, 4096));
        assertAbortedAndReset("DEV_DATA_STATE on channel 0 where the section is in state SETUP");
    }

    @Test
    void truncatedStream() throws Exception {
        handshake();
        byte[] stream = deviceStream();
        peer.send(dataFrame(stream, 0, 1 << 20));
        peer.send(dataFrame(stream, 1 << 20, 1 << 20).slice(0, 500_000));
        await("the first chunk reaches the device").atMost(Duration.ofSeconds(10)).until(() -> agent.migrations().find("m-test").status().transfer().dataBytes() > 0 || deviceEvents.size() > 3);
        peer.close();
        await("the migration is recorded as failed").atMost(Duration.ofSeconds(10)).until(() -> {
            MigrationRecord r = agent.migrations().find("m-test");
            return r.status().outcome() == MigrationStatus.Outcome.FAILED && r.toJson().containsKey("deviceState");
        });
        assertThat(agent.migrations().find("m-test").status().error())
                .contains("truncated stream: the connection closed in frame 4 (SECTION, 499984 of 1048592 bytes)");
        assertThat(device.state().await()).isEqualTo(DeviceState.RUNNING);
    }

    @Test
    void aStreamThatEndsWithoutItsDataIsRejectedByTheDevice() throws Exception {
        handshake();
        byte[] stream = deviceStream();
        peer.send(dataFrame(stream, 0, 1 << 20));
        endSection(1 << 20, 1);
        assertAbortedAndReset("device gpu0 rejected the migrated state");
        assertThat(agent.migrations().find("m-test").status().error()).contains("incomplete stream").contains("EINVAL");
    }

    @Test
    void countsThatDisagreeWithWhatArrivedAreRejected() throws Exception {
        handshake();
        byte[] stream = deviceStream();
        int chunks = sendAll(stream);
        endSection(stream.length + 1, chunks);
        assertAbortedAndReset("the source sent " + (stream.length + 1) + " bytes in " + chunks + " chunks, "
                + stream.length + " bytes in " + chunks + " chunks arrived");
    }

    /** Ends the section as QEMU does (END_OF_STATE, an empty DEV_CONFIG_STATE, END_OF_STATE), then the counts. */
    private void endSection(long dataBytes, int dataChunks) {
        peer.send(Frames.marker(0, VfioTag.END_OF_STATE, seq++));
        peer.send(Frames.config(0, new byte[0], seq++));
        peer.send(Frames.marker(0, VfioTag.END_OF_STATE, seq++));
        peer.send(Frames.control(FrameType.SECTION_END, 0, new JsonObject().put("dataBytes", dataBytes)
                .put("dataChunks", dataChunks), seq++));
    }

    /** Sends the stream in 1 MiB data frames and returns how many. */
    private int sendAll(byte[] stream) {
        int chunks = 0;
        for (int off = 0; off < stream.length; off += 1 << 20) {
            peer.send(dataFrame(stream, off, Math.min(1 << 20, stream.length - off)));
            chunks++;
        }
        return chunks;
    }

    @Test
    void aCompleteHandMadeStreamLoads() throws Exception {
        handshake();
        byte[] stream = deviceStream();
        int chunks = sendAll(stream);
        endSection(stream.length, chunks);
        assertThat(peer.await(FrameType.LOADED).getLong("dataBytes")).isEqualTo(stream.length);
        assertThat(device.state().await()).isEqualTo(DeviceState.STOP);
        peer.send(Frames.control(FrameType.START, 0, new JsonObject(), seq++));
        peer.await(FrameType.STARTED);
        assertThat(device.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(Sim.digest(device)).isEqualTo(SimulatedDevice.builder("src", SIZE).pageSize(LoopbackAgent.PAGE).flags(MigrationFlags.ALL).seed(1).build().stateDigest());
    }

    @Test
    void aConnectionLostAfterLoadedKeepsTheStateHeldInStopUntilReleased() throws Exception {
        handshake();
        byte[] stream = deviceStream();
        endSection(stream.length, sendAll(stream));
        peer.await(FrameType.LOADED);
        // The source may have committed: its verdict is unknown, so the loaded state is kept, and not run.
        peer.close();
        await("held, and the session ended").atMost(Duration.ofSeconds(30))
                .until(() -> "m-test".equals(device.heldFor()) && device.owner() == null);
        assertThat(device.state().await()).isEqualTo(DeviceState.STOP);
        JsonObject released = io.vfioproxy.api.AgentCommands.release("dst", agent.devices(), "gpu0",
                new JsonObject().put("discard", true)).await();
        assertThat(released.getString("state")).isEqualTo("RUNNING");
        assertThat(device.heldFor()).isNull();
    }

    @Test
    void anIncompatibleDeviceIsRefusedAndNeverTouched() {
        peer.send(Frames.control(FrameType.HELLO, 0, hello("gpu0", "sim-4096x1"), seq++));
        JsonObject refuse = peer.await(FrameType.REFUSE);
        assertThat(refuse.getString("reason")).contains("device gpu0 cannot load the state of gpu0")
                .contains("source is sim-4096x1 (simulated), destination is " + model());
        peer.awaitClosed();
        assertThat(device.state().await()).isEqualTo(DeviceState.RUNNING);
        assertThat(deviceEvents).isEmpty();
        assertThat(device.owner()).isNull();
    }

    @Test
    void anUnknownDeviceIsRefused() {
        peer.send(Frames.control(FrameType.HELLO, 0, hello("nope", model()), seq++));
        assertThat(peer.await(FrameType.REFUSE).getString("reason")).isEqualTo("agent dst has no device named 'nope'");
        peer.awaitClosed();
    }

    @Test
    void somethingThatIsNotOurProtocolIsAbortedAndClosed() {
        peer.send(Buffer.buffer("GET / HTTP/1.1\r\nHost: agent\r\n\r\n"));
        assertThat(peer.await(FrameType.ABORT).getString("reason")).contains("bad magic 0x4745");
        peer.awaitClosed();
        assertThat(device.state().await()).isEqualTo(DeviceState.RUNNING);
    }
}
