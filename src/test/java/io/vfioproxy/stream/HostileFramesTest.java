package io.vfioproxy.stream;

import static org.assertj.core.api.Assertions.assertThat;

import io.vertx.core.buffer.Buffer;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

/**
 * The stream decoder against hostile input: every truncation, bit flips, lengths of any value, frames out of
 * order, deeply nested JSON. Each ends in a {@link ProtocolException} or a decoder that waits in mid-frame for bytes
 * that never come (the session's timeouts end those); never another exception, and never a data record reported
 * complete with bytes other than those sent: the loader writes a record to its device only once it is complete.
 */
class HostileFramesTest {

    private static final class Outcome {
        final List<String> events;
        final Throwable error;
        final boolean midFrame;

        Outcome(List<String> events, Throwable error, boolean midFrame) {
            this.events = events;
            this.error = error;
            this.midFrame = midFrame;
        }
    }

    private static Outcome decode(Buffer input) {
        FrameCodecTest.Recorder recorder = new FrameCodecTest.Recorder();
        FrameDecoder decoder = new FrameDecoder(Limits.DEFAULT, recorder);
        try {
            decoder.feed(input);
            return new Outcome(recorder.events, null, decoder.midFrame());
        } catch (ProtocolException e) {
            return new Outcome(recorder.events, e, decoder.midFrame());
        }
    }

    @Provide
    Arbitrary<List<byte[]>> chunks() {
        return Arbitraries.bytes().array(byte[].class).ofMinSize(1).ofMaxSize(3000).list().ofMinSize(1).ofMaxSize(3);
    }

    /** The data records among {@code events}, as their length and content hash. */
    private static List<String> data(List<String> events) {
        return events.stream().filter(e -> e.startsWith("DATA@")).map(e -> e.substring(e.indexOf(':'))).toList();
    }

    /** No data record reported complete differs from the one sent in its place. */
    private static void assertNoCorruptData(List<String> got, List<String> expected) {
        List<String> gotData = data(got);
        List<String> sentData = data(expected);
        assertThat(gotData.size()).isLessThanOrEqualTo(sentData.size());
        assertThat(gotData).isEqualTo(sentData.subList(0, gotData.size()));
    }

    @Property(tries = 20)
    void everyTruncationIsReportedAsOne(@ForAll("chunks") List<byte[]> chunks) {
        List<String> expected = new ArrayList<>();
        List<Buffer> frames = FrameCodecTest.conversation(chunks, expected);
        Buffer all = FrameCodecTest.join(frames);
        for (int end = 0; end < all.length(); end++) {
            Outcome o = decode(all.slice(0, end));
            assertThat(o.error).as("a prefix of a valid stream is not an error").isNull();
            assertThat(o.events).isEqualTo(expected.subList(0, o.events.size()));
            assertThat(o.midFrame || o.events.size() < expected.size()).as("prefix of %d bytes", end).isTrue();
        }
    }

    @Property(tries = 3000)
    void aBitFlipNeverDeliversCorruptData(@ForAll("chunks") List<byte[]> chunks,
            @ForAll @IntRange(min = 0, max = Integer.MAX_VALUE - 1) int where, @ForAll @IntRange(max = 7) int bit,
            @ForAll boolean nearAHeader) {
        List<String> expected = new ArrayList<>();
        List<Buffer> frames = FrameCodecTest.conversation(chunks, expected);
        Buffer all = FrameCodecTest.join(frames);
        int at = where % all.length();
        if (nearAHeader) {
            // Headers are a small part of the bytes: aim at one, or at the record header after it.
            int frame = where % frames.size();
            int start = 0;
            for (int i = 0; i < frame; i++) {
                start += frames.get(i).length();
            }
            at = start + where % Math.min(frames.get(frame).length(), Frames.DATA_OFFSET);
        }
        all.setByte(at, (byte) (all.getByte(at) ^ (1 << bit)));
        Outcome o = decode(all);
        assertNoCorruptData(o.events, expected);
        if (at >= Frames.HEADER_SIZE && o.error == null && !o.midFrame) {
            // A flip in a payload is caught by its checksum; only header fields outside it (type, channel) can
            // change what a frame means, and the session checks those against the handshake and its grammar.
            assertThat(o.events).isNotEqualTo(expected);
        }
    }

    @Property(tries = 1000)
    void aLengthOfAnyValueIsRefusedOrWaitedFor(@ForAll("chunks") List<byte[]> chunks, @ForAll int frame,
            @ForAll("lengths") int length) {
        List<String> expected = new ArrayList<>();
        List<Buffer> frames = FrameCodecTest.conversation(chunks, expected);
        Buffer target = frames.get(Math.floorMod(frame, frames.size()));
        int actual = target.getInt(4);
        target.setInt(4, length);
        Outcome o = decode(FrameCodecTest.join(frames));
        assertNoCorruptData(o.events, expected);
        if (length != actual) {
            assertThat(o.error != null || o.midFrame).as("length %d for %d", length, actual).isTrue();
        }
        if (length < 0 || length > Limits.DEFAULT.maxSectionPayload()) {
            assertThat(o.error).isNotNull();
            assertThat(o.events).hasSizeLessThan(expected.size());
        }
    }

    @Provide
    Arbitrary<Integer> lengths() {
        return Arbitraries.oneOf(Arbitraries.integers(), Arbitraries.integers().between(-16, 70_000),
                Arbitraries.of(Integer.MIN_VALUE, -1, 0, 7, Integer.MAX_VALUE, Limits.DEFAULT.maxSectionPayload() + 1));
    }

    @Property(tries = 500)
    void framesOutOfOrderAreRefused(@ForAll("chunks") List<byte[]> chunks, @ForAll int first, @ForAll int second) {
        List<String> expected = new ArrayList<>();
        List<Buffer> frames = new ArrayList<>(FrameCodecTest.conversation(chunks, expected));
        int a = Math.floorMod(first, frames.size());
        int b = Math.floorMod(second, frames.size());
        if (a == b) {
            frames.add(a, frames.get(a));
        } else {
            Buffer t = frames.get(a);
            frames.set(a, frames.get(b));
            frames.set(b, t);
        }
        Outcome o = decode(FrameCodecTest.join(frames));
        assertThat(o.error).isInstanceOf(ProtocolException.class);
        assertThat(o.error.getMessage()).contains("out of order");
        assertNoCorruptData(o.events, expected);
    }

    @net.jqwik.api.Example
    void theNestingLimitIsAThousandLevels() {
        deeplyNestedJsonIsRefused(999);
        deeplyNestedJsonIsRefused(1000);
    }

    @Property(tries = 200)
    void deeplyNestedJsonIsRefused(@ForAll @IntRange(min = 1, max = 30_000) int depth) {
        byte[] payload = ("{\"protocol\":" + "[".repeat(depth) + "]".repeat(depth) + "}")
                .getBytes(StandardCharsets.UTF_8);
        ByteBuffer out = ByteBuffer.allocate(Frames.HEADER_SIZE + payload.length);
        Frames.putHeader(out, 0, FrameType.HELLO, 0, payload.length, Frames.crc(payload), 0);
        out.put(Frames.HEADER_SIZE, payload);
        Outcome o = decode(Buffer.buffer(out.array()));
        // Jackson refuses more than 1000 levels; the object around the arrays is one.
        if (payload.length > Limits.DEFAULT.maxControlPayload() || depth + 1 > 1000) {
            assertThat(o.error).as("depth %d", depth).isInstanceOf(ProtocolException.class);
        } else {
            assertThat(o.error).isNull();
            assertThat(o.events).hasSize(1);
        }
    }
}
