package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowable;

import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.testing.JsonTrees;
import java.util.ArrayList;
import java.util.List;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;

/**
 * The handshake against hostile HELLOs: whatever JSON a peer sends, decoding it and checking it ends in a HELLO the
 * agent can act on or in a typed refusal with the reason; never another exception.
 */
class HelloPropertyTest {

    private static final JsonObject VALID = new JsonObject().put("protocol", Frames.PROTOCOL_VERSION)
            .put("migration", "m-1").put("sourceAgent", "src").put("chunkSize", 1 << 20).put("mode", "precopy")
            .put("checkpoint", false).put("features", new JsonArray().add("switchover-ack"))
            .put("devices", new JsonArray().add(new JsonObject().put("channel", 0).put("sourceDevice", "gpu0")
                    .put("targetDevice", "gpu0").put("identity", new JsonObject().put("backend", "simulated"))));

    @Provide
    Arbitrary<JsonObject> hellos() {
        return JsonTrees.objects(new ArrayList<>(VALID.fieldNames()), VALID);
    }

    @Provide
    Arbitrary<JsonObject> deviceEntries() {
        JsonObject entry = VALID.getJsonArray("devices").getJsonObject(0);
        return JsonTrees.objects(List.of("channel", "sourceDevice", "targetDevice", "identity", "flags"), entry);
    }

    @Property(tries = 2000)
    void anyHelloIsTakenOrRefusedWithAReason(@ForAll("hellos") JsonObject hello) {
        Throwable t = catchThrowable(() -> Hello.parse(hello, Limits.DEFAULT));
        if (t != null) {
            assertThat(t).isInstanceOf(Hello.Invalid.class);
            assertThat(t.getMessage()).isNotBlank();
        }
    }

    @Property(tries = 1000)
    void anyDeviceEntryIsTakenOrRefusedWithAReason(@ForAll("deviceEntries") JsonObject entry,
            @ForAll("deviceEntries") JsonObject second) {
        JsonObject hello = VALID.copy().put("devices", new JsonArray().add(entry).add(second));
        Throwable t = catchThrowable(() -> Hello.parse(hello, Limits.DEFAULT));
        if (t != null) {
            assertThat(t).isInstanceOf(Hello.Invalid.class);
        }
    }

    @Property(tries = 500)
    void aHelloThroughTheDecoderArrivesWhole(@ForAll("hellos") JsonObject hello) {
        List<JsonObject> seen = new ArrayList<>();
        FrameDecoder decoder = new FrameDecoder(Limits.DEFAULT, FrameDecoder.controlOnly((type, ch, body) -> seen.add(body)));
        Buffer frame = Frames.control(FrameType.HELLO, 0, hello, 0);
        if (frame.length() - Frames.HEADER_SIZE > Limits.DEFAULT.maxControlPayload()) {
            assertThat(catchThrowable(() -> decoder.feed(frame))).isInstanceOf(ProtocolException.class)
                    .hasMessageContaining("exceeds the limit");
            return;
        }
        decoder.feed(frame);
        // JSON has one number type: compare the text, not Integer with Long.
        assertThat(seen).hasSize(1);
        assertThat(seen.get(0).encode()).isEqualTo(hello.encode());
    }
}
