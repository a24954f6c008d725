package io.vfioproxy.testing;

import io.vertx.core.Vertx;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.transport.StreamEndpoint;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A TCP relay between a source and a destination agent that a test can hold: it forwards at most a number of
 * bytes source to destination, and stops forwarding destination to source when asked, so a migration can be
 * caught in a given phase without any timing.
 */
public final class Relay {

    private final NetClient client;
    private final long sourceToDestinationLimit;
    private volatile boolean holdDestinationToSource;
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
        in.handler(buf -> {
            long before = forwarded.getAndAdd(buf.length());
            long room = sourceToDestinationLimit - before;
            if (room > 0) {
                out.write(room >= buf.length() ? buf : buf.slice(0, (int) room));
            }
        });
        out.handler(buf -> {
            if (!holdDestinationToSource) {
                in.write(buf);
            }
        });
        in.closeHandler(v -> out.close());
        out.closeHandler(v -> in.close());
        in.resume();
    }

    /** From now on, nothing the destination sends reaches the source. */
    public void holdDestinationToSource() {
        holdDestinationToSource = true;
    }

    public StreamEndpoint endpoint() {
        return new StreamEndpoint("127.0.0.1", port);
    }

}
