package io.vfioproxy.testing;

import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.VfioTag;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BiConsumer;
import org.awaitility.Awaitility;

/**
 * A hand-driven protocol peer over a real TCP connection: sends whatever bytes a test crafts and records the
 * control frames it gets back.
 */
public final class RawPeer {

    public record Received(FrameType type, JsonObject body) {
    }

    /** Held: Vert.x 5 closes a client nothing references at the next GC, and its connections with it. */
    private final NetClient client;
    private final NetSocket socket;
    private final List<Received> received = new CopyOnWriteArrayList<>();
    private final Promise<Void> closed = Promise.promise();

    private RawPeer(NetClient client, NetSocket socket) {
        this.client = client;
        this.socket = socket;
        FrameDecoder decoder = new FrameDecoder(Limits.DEFAULT, controlOnly((type, body) ->
                received.add(new Received(type, body))));
        socket.handler(decoder::feed);
        socket.closeHandler(v -> closed.tryComplete());
    }

    /** A listener that passes control frames on and ignores device sections. */
    public static FrameDecoder.Listener controlOnly(BiConsumer<FrameType, JsonObject> onControl) {
        return new FrameDecoder.Listener() {
            @Override
            public void onControl(FrameType type, int channel, JsonObject body) {
                onControl.accept(type, body);
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
            }

            @Override
            public void onDataEnd(int channel) {
            }
        };
    }

    public static RawPeer connect(Vertx vertx, int port) {
        NetClient client = vertx.createNetClient();
        return new RawPeer(client, client.connect(port, "127.0.0.1").await());
    }

    public void send(Buffer bytes) {
        socket.write(bytes).await();
    }

    public void close() {
        socket.close().await();
    }

    public boolean isClosed() {
        return closed.future().isComplete();
    }

    /** Waits for a control frame of {@code type} and returns its body. */
    public JsonObject await(FrameType type) {
        Awaitility.await(type + " from the agent (got " + received + ")").atMost(Duration.ofSeconds(20))
                .until(() -> received.stream().anyMatch(r -> r.type() == type));
        return received.stream().filter(r -> r.type() == type).findFirst().orElseThrow().body();
    }

    public void awaitClosed() {
        Awaitility.await("the agent closes the connection").atMost(Duration.ofSeconds(20)).until(this::isClosed);
    }

    public List<Received> received() {
        return received;
    }
}
