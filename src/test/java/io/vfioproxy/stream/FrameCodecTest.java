package io.vfioproxy.stream;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import org.junit.jupiter.api.Test;

class FrameCodecTest {

    /** Records what the decoder reports, data joined per record. */
    static final class Recorder implements FrameDecoder.Listener {
        final List<String> events = new ArrayList<>();
        Buffer data = Buffer.buffer();

        @Override
        public void onControl(FrameType type, int channel, JsonObject body) {
            events.add(type + "@" + channel + ":" + body.encode());
        }

        @Override
        public void onMarker(int channel, VfioTag tag) {
            events.add(tag + "@" + channel);
        }

        @Override
        public void onConfig(int channel, Buffer blob) {
            events.add("CONFIG@" + channel + ":" + blob.toString(StandardCharsets.UTF_8));
        }

        @Override
        public void onDataStart(int channel, long size) {
            data = Buffer.buffer();
        }

        @Override
        public void onData(int channel, Buffer piece) {
            data.appendBuffer(piece);
        }

        @Override
        public void onDataEnd(int channel) {
            events.add("DATA@" + channel + ":" + data.length() + ":" + java.util.Arrays.hashCode(data.getBytes()));
        }
    }

    static Buffer dataFrame(int channel, byte[] chunk, int seq) {
        ByteBuf buf = Unpooled.buffer(Frames.DATA_OFFSET + chunk.length);
        ByteBuffer view = buf.nioBuffer(0, Frames.DATA_OFFSET + chunk.length);
        view.put(Frames.DATA_OFFSET, chunk);
        int crc = Frames.prepareData(view, chunk.length);
        Frames.sealHeader(view, channel, chunk.length, crc, seq);
        buf.writerIndex(Frames.DATA_OFFSET + chunk.length);
        return Buffer.buffer(buf.array()).slice(0, Frames.DATA_OFFSET + chunk.length).copy();
    }

    /** A whole conversation as the source sends it, and what a decoder must report for it. */
    static List<Buffer> conversation(List<byte[]> chunks, List<String> expected) {
        List<Buffer> frames = new ArrayList<>();
        int seq = 0;
        JsonObject hello = new JsonObject().put("protocol", 1).put("migration", "m-1");
        frames.add(Frames.control(FrameType.HELLO, 0, hello, seq++));
        expected.add("HELLO@0:" + hello.encode());
        frames.add(Frames.marker(3, VfioTag.DEV_SETUP_STATE, seq++));
        expected.add("DEV_SETUP_STATE@3");
        frames.add(Frames.marker(3, VfioTag.END_OF_STATE, seq++));
        expected.add("END_OF_STATE@3");
        for (byte[] chunk : chunks) {
            frames.add(dataFrame(3, chunk, seq++));
            expected.add("DATA@3:" + chunk.length + ":" + java.util.Arrays.hashCode(chunk));
        }
        frames.add(Frames.config(3, "{\"dataBytes\":1}".getBytes(StandardCharsets.UTF_8), seq++));
        expected.add("CONFIG@3:{\"dataBytes\":1}");
        frames.add(Frames.marker(3, VfioTag.END_OF_STATE, seq));
        expected.add("END_OF_STATE@3");
        return frames;
    }

    static Buffer join(List<Buffer> frames) {
        Buffer all = Buffer.buffer();
        frames.forEach(all::appendBuffer);
        return all;
    }

    @Provide
    Arbitrary<List<byte[]>> chunks() {
        return Arbitraries.bytes().array(byte[].class).ofMinSize(0).ofMaxSize(20_000).list().ofMaxSize(6);
    }

    @Provide
    Arbitrary<List<Integer>> cuts() {
        return Arbitraries.integers().between(1, 9000).list().ofMinSize(1).ofMaxSize(50);
    }

    @Property(tries = 200)
    void decodesTheSameWhateverTheSegmentation(@ForAll("chunks") List<byte[]> chunks, @ForAll("cuts") List<Integer> cuts) {
        List<String> expected = new ArrayList<>();
        Buffer all = join(conversation(chunks, expected));
        Recorder recorder = new Recorder();
        FrameDecoder decoder = new FrameDecoder(Limits.DEFAULT, recorder);
        int pos = 0;
        int i = 0;
        while (pos < all.length()) {
            int n = Math.min(cuts.get(i++ % cuts.size()), all.length() - pos);
            decoder.feed(all.slice(pos, pos + n));
            pos += n;
        }
        assertThat(recorder.events).containsExactlyElementsOf(expected);
        assertThat(decoder.midFrame()).isFalse();
        assertThat(decoder.frames()).isEqualTo(expected.size());
    }

    private static String decodeError(Buffer input) {
        FrameDecoder decoder = new FrameDecoder(Limits.DEFAULT, new Recorder());
        try {
            decoder.feed(input);
        } catch (ProtocolException e) {
            return e.getMessage();
        }
        return decoder.midFrame() ? "truncated " + decoder.position() : "no error";
    }

    @Test
    void rejectsAStreamThatIsNotOurs() {
        assertThat(decodeError(Buffer.buffer("GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
                .contains("frame 0: bad magic 0x4745").contains("not a vfio-migration-proxy stream");
    }

    @Test
    void rejectsUnknownFrameTypes() {
        Buffer frame = Frames.control(FrameType.HELLO, 0, new JsonObject(), 0);
        frame.setByte(2, (byte) 0x55);
        assertThat(decodeError(frame)).isEqualTo("frame 0: unknown frame type 0x55");
    }

    @Test
    void rejectsOversizedLengthsBeforeReadingThePayload() {
        Buffer header = Frames.control(FrameType.HELLO, 0, new JsonObject(), 0).slice(0, Frames.HEADER_SIZE).copy();
        header.setInt(4, 70_000);
        assertThat(decodeError(header)).isEqualTo("frame 0: HELLO payload length 70000 exceeds the limit of 65536 bytes");
        Buffer section = Frames.marker(0, VfioTag.END_OF_STATE, 0).slice(0, Frames.HEADER_SIZE).copy();
        section.setInt(4, -1);
        assertThat(decodeError(section)).contains("SECTION payload length 4294967295 exceeds the limit of 4194320");
    }

    @Test
    void rejectsABadChecksum() {
        Buffer frame = dataFrame(0, new byte[1000], 0);
        frame.setByte(Frames.DATA_OFFSET + 500, (byte) 1);
        assertThat(decodeError(frame)).startsWith("frame 0: SECTION CRC32C mismatch");
        Buffer control = Frames.control(FrameType.ABORT, 0, new JsonObject().put("reason", "x"), 0);
        control.setByte(Frames.HEADER_SIZE + 3, (byte) 'Z');
        assertThat(decodeError(control)).startsWith("frame 0: ABORT CRC32C mismatch");
    }

    @Test
    void rejectsUnknownVfioTags() {
        Buffer frame = Frames.marker(0, VfioTag.END_OF_STATE, 0);
        frame.setLong(Frames.HEADER_SIZE, 0xffffffffef100009L);
        // The checksum is computed over the original tag, but the tag is checked first.
        assertThat(decodeError(frame)).isEqualTo("frame 0: unknown VFIO tag 0xffffffffef100009");
    }

    @Test
    void rejectsFramesOutOfSequence() {
        Buffer two = join(List.of(Frames.marker(0, VfioTag.END_OF_STATE, 0), Frames.marker(0, VfioTag.END_OF_STATE, 2)));
        assertThat(decodeError(two)).isEqualTo("frame 1: sequence number 2 out of order");
    }

    @Test
    void rejectsADataSizeThatDisagreesWithTheFrame() {
        Buffer frame = dataFrame(0, new byte[100], 0);
        frame.setLong(Frames.HEADER_SIZE + 8, 99);
        assertThat(decodeError(frame)).isEqualTo("frame 0: DEV_DATA_STATE size 99 does not match the 100 bytes left in the frame");
    }

    @Test
    void rejectsMarkersWithPayloadAndControlFramesThatAreNotJson() {
        ByteBuffer payload = ByteBuffer.allocate(12).putLong(VfioTag.END_OF_STATE.value()).putInt(7);
        Buffer frame = Buffer.buffer(Frames.HEADER_SIZE + 12);
        ByteBuffer out = ByteBuffer.allocate(Frames.HEADER_SIZE + 12);
        Frames.putHeader(out, 0, FrameType.SECTION, 0, 12, Frames.crc(payload.array()), 0);
        out.put(Frames.HEADER_SIZE, payload.array());
        frame.appendBytes(out.array());
        assertThat(decodeError(frame)).isEqualTo("frame 0: END_OF_STATE carries 4 unexpected bytes");

        byte[] notJson = "[1,2]".getBytes(StandardCharsets.UTF_8);
        ByteBuffer c = ByteBuffer.allocate(Frames.HEADER_SIZE + notJson.length);
        Frames.putHeader(c, 0, FrameType.HELLO, 0, notJson.length, Frames.crc(notJson), 0);
        c.put(Frames.HEADER_SIZE, notJson);
        assertThat(decodeError(Buffer.buffer(c.array()))).isEqualTo("frame 0: HELLO payload is not a JSON object");
    }

    @Test
    void reportsWhereAStreamWasTruncated() {
        Buffer frame = dataFrame(0, new byte[1000], 0);
        assertThat(decodeError(frame.slice(0, 500))).isEqualTo("truncated in frame 0 (SECTION, 484 of 1016 bytes)");
        assertThat(decodeError(frame.slice(0, 7))).isEqualTo("truncated in the header of frame 0 (7 of 16 bytes)");
    }

    @Test
    void randomGarbageNeverDecodesSilently() {
        Random random = new Random(5);
        for (int i = 0; i < 1000; i++) {
            byte[] junk = new byte[random.nextInt(200) + 1];
            random.nextBytes(junk);
            assertThat(decodeError(Buffer.buffer(junk))).isNotEqualTo("no error");
        }
    }
}
