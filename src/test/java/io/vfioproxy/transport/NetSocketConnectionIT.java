package io.vfioproxy.transport;

import static org.awaitility.Awaitility.await;

import static org.assertj.core.api.Assertions.assertThat;

import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.testing.NoBufferLeaks;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The TCP connection's zero-copy input, over real loopback sockets. */
@ExtendWith(NoBufferLeaks.class)
class NetSocketConnectionIT {

    private Vertx vertx;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    @Test
    void readsQueuedWhenAPausedConnectionClosesAreReleased() {
        AtomicLong handled = new AtomicLong();
        AtomicInteger closes = new AtomicInteger();
        Promise<NetSocketConnection> accepted = Promise.promise();
        int port = vertx.createNetServer().connectHandler(socket -> {
            NetSocketConnection connection = new NetSocketConnection(socket, 1 << 20, 64 * 1024);
            // Like a destination whose device has fallen behind: it takes one read, then holds the input back.
            connection.input().handler(buf -> {
                handled.addAndGet(buf.length());
                connection.input().pause();
            });
            connection.closeHandler(v -> closes.incrementAndGet());
            accepted.complete(connection);
        }).listen(0, "127.0.0.1").await().actualPort();

        NetSocket client = vertx.createNetClient().connect(port, "127.0.0.1").await();
        AtomicLong sent = new AtomicLong();
        Buffer chunk = Buffer.buffer(new byte[64 * 1024]);
        for (int i = 0; i < 64; i++) {
            client.write(chunk).onSuccess(v -> sent.addAndGet(chunk.length()));
        }
        NetSocketConnection connection = accepted.future().await();
        // Reads keep arriving after the pause until Vert.x stops reading the socket: they wait in its queue.
        await("the server read once and the client's writes left it").atMost(Duration.ofSeconds(10)).until(() -> handled.get() > 0 && sent.get() >= 16L * chunk.length());

        // Like a destination that gives up on a device that does not catch up: it closes while paused.
        connection.close().await();
        await("the close is reported").atMost(Duration.ofSeconds(10)).until(() -> closes.get() == 1);
        // Only what was read before the pause reached the handler; what waited behind it is released (NoBufferLeaks).
        assertThat(handled.get()).isLessThan(sent.get());
    }
}
