package io.vfioproxy.testing;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetSocket;
import io.vertx.core.parsetools.RecordParser;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.StreamEndpoint;
import io.vfioproxy.stream.VfioTag;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A TCP relay between a source and a destination agent that a test can hold: it forwards at most a number of
 * bytes source to destination, and at most a number of frames destination to source, so a migration can be caught
 * in a given phase without any timing.
 */
public final class Relay {

    private final NetClient client;
    private final long sourceToDestinationLimit;
    private volatile int destinationFramesToPass = Integer.MAX_VALUE;
    private final AtomicLong forwardedToDestination = new AtomicLong();
    private final List<String> sourceFrames = new CopyOnWriteArrayList<>();
    private final int port;

    private Relay(Vertx vertx, StreamEndpoint target, long sourceToDestinationLimit) {
        this.client = vertx.createNetClient();
        this.sourceToDestinationLimit = sourceToDestinationLimit;
        this.port = vertx.createNetServer().connectHandler(in -> {
            in.pause();
            client.connect(target.port(), target.host()).onSuccess(out -> connect(in, out));
        }).listen(0, "127.0.0.1").await().actualPort();
    }

    /** A relay to {@code target} that forwards at most {@code limit} bytes from the source. */
    public static Relay start(Vertx vertx, StreamEndpoint target, long limit) {
        return new Relay(vertx, target, limit);
    }

    private void connect(NetSocket in, NetSocket out) {
        AtomicLong forwarded = new AtomicLong();
        FrameDecoder tap = new FrameDecoder(Limits.DEFAULT, new FrameDecoder.Listener() {
            @Override
            public void onControl(FrameType type, int channel, JsonObject body) {
                sourceFrames.add(type.name());
            }

            @Override
            public void onMarker(int channel, VfioTag tag) {
                sourceFrames.add(tag.name());
            }

            @Override
            public void onConfig(int channel, Buffer blob) {
                sourceFrames.add("DEV_CONFIG_STATE " + blob.length());
            }

            @Override
            public void onDataStart(int channel, long size) {
                sourceFrames.add("DEV_DATA_STATE");
            }

            @Override
            public void onData(int channel, Buffer piece) {
            }

            @Override
            public void onDataEnd(int channel) {
            }
        });
        in.handler(buf -> {
            tap.feed(buf);
            long before = forwarded.getAndAdd(buf.length());
            long room = sourceToDestinationLimit - before;
            if (room > 0) {
                Buffer part = room >= buf.length() ? buf : buf.slice(0, (int) room);
                out.write(part);
                forwardedToDestination.addAndGet(part.length());
            }
        });
        RecordParser frames = RecordParser.newFixed(Frames.HEADER_SIZE);
        int[] frame = {0};
        frames.handler(part -> {
            if (frame[0]++ % 2 == 0) {
                // A frame header: the payload follows (an empty one is a frame of its own).
                int length = part.getInt(4);
                if (length > 0) {
                    frames.fixedSizeMode(length);
                } else {
                    frame[0]++;
                }
            } else {
                frames.fixedSizeMode(Frames.HEADER_SIZE);
            }
            boolean whole = frame[0] % 2 == 0;
            if (destinationFramesToPass > 0) {
                in.write(part);
                if (whole) {
                    destinationFramesToPass--;
                }
            }
        });
        out.handler(frames);
        in.closeHandler(v -> out.close());
        out.closeHandler(v -> in.close());
        in.resume();
    }

    /**
     * What the source sent, frame by frame: control frame types, VFIO tags, "DEV_DATA_STATE" for each data record,
     * "DEV_CONFIG_STATE n" with the config's length.
     */
    public List<String> sourceFrames() {
        return sourceFrames;
    }

    /** Bytes forwarded from the source to the destination so far, over every connection. */
    public long sourceToDestinationBytes() {
        return forwardedToDestination.get();
    }

    /** Only the next {@code n} frames the destination sends reach the source; then nothing does. */
    public void passDestinationFrames(int n) {
        destinationFramesToPass = n;
    }

    public StreamEndpoint endpoint() {
        return new StreamEndpoint("127.0.0.1", port);
    }

}
