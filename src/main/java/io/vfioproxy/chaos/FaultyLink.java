package io.vfioproxy.chaos;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetSocket;
import java.util.function.IntSupplier;

/**
 * A TCP link between two agents that misbehaves on demand: the next connection passes, is cut, or stalls (stops
 * carrying bytes either way, the connection left open) after a given number of bytes from the source.
 */
final class FaultyLink {

    /** What the next connection does. */
    enum Mode { PASS, CUT, STALL }

    private final Vertx vertx;
    private final NetClient client;
    private final IntSupplier target;
    private NetServer server;
    private volatile Mode mode = Mode.PASS;
    private volatile long after;

    /** @param target the destination agent's stream port now (it changes when the agent restarts) */
    FaultyLink(Vertx vertx, IntSupplier target) {
        this.vertx = vertx;
        this.client = vertx.createNetClient();
        this.target = target;
    }

    Future<Integer> start() {
        server = vertx.createNetServer().connectHandler(this::carry);
        return server.listen(0, "127.0.0.1").map(NetServer::actualPort);
    }

    /** The connections opened from now on do {@code m} after {@code bytes} from the source. */
    void next(Mode m, long bytes) {
        mode = m;
        after = bytes;
    }

    private void carry(NetSocket in) {
        Mode m = mode;
        long limit = after;
        in.pause();
        in.exceptionHandler(e -> in.close());
        client.connect(target.getAsInt(), "127.0.0.1").onComplete(ar -> {
            if (ar.failed()) {
                in.close();
                return;
            }
            NetSocket out = ar.result();
            long[] passed = {0};
            boolean[] stalled = {false};
            in.handler(buf -> {
                if (stalled[0]) {
                    return;
                }
                passed[0] += buf.length();
                if (m != Mode.PASS && passed[0] > limit) {
                    int keep = (int) Math.max(0, buf.length() - (passed[0] - limit));
                    if (keep > 0) {
                        out.write(buf.slice(0, keep).copy());
                    }
                    if (m == Mode.CUT) {
                        in.close();
                        out.close();
                    } else {
                        // Neither side reads any more: the source's writes back up, as over a dead route.
                        stalled[0] = true;
                        in.pause();
                        out.pause();
                    }
                    return;
                }
                out.write(buf);
                if (out.writeQueueFull()) {
                    in.pause();
                    out.drainHandler(v -> in.resume());
                }
            });
            out.handler(buf -> {
                if (!stalled[0]) {
                    in.write(buf);
                }
            });
            // A reset is what a cut or a killed agent looks like here: nothing to report.
            in.exceptionHandler(e -> in.close());
            out.exceptionHandler(e -> out.close());
            in.closeHandler(v -> out.close());
            out.closeHandler(v -> in.close());
            in.resume();
        });
    }

    Future<Void> close() {
        return server == null ? Future.succeededFuture() : server.close().compose(v -> client.close());
    }
}
