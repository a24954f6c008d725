package io.vfioproxy.vertx;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.PooledByteBufAllocator;
import io.vertx.core.AbstractVerticle;
import io.vertx.core.Context;
import io.vertx.core.DeploymentOptions;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.ThreadingModel;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.ServerWebSocket;
import io.vertx.core.http.WebSocket;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.http.WebSocketConnectOptions;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetClientOptions;
import io.vertx.core.net.NetServerOptions;
import io.vertx.core.net.NetSocket;
import io.vertx.core.net.SelfSignedCertificate;
import io.vertx.core.streams.WriteStream;
import io.vfioproxy.security.TlsMaterial;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.transport.NetSocketConnection;
import io.vfioproxy.transport.WebSocketConnection;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BiFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * What the agent relies on in Vert.x's internal API, through {@link VertxInternals}, over real loopback sockets: each
 * test fails if a Vert.x upgrade changes the behaviour the adapter depends on.
 */
@ExtendWith(NoBufferLeaks.class)
class VertxInternalsIT {

    private static final int MIB = 1 << 20;

    private Vertx vertx;
    /** Held: Vert.x 5 closes a client nothing references at the next GC, and its connections with it. */
    private final List<NetClient> clients = new ArrayList<>();
    private final List<WebSocketClient> wsClients = new ArrayList<>();

    private NetClient netClient() {
        NetClient client = vertx.createNetClient();
        clients.add(client);
        return client;
    }

    @BeforeEach
    void start() {
        vertx = Vertx.vertx(new VertxOptions().setEventLoopPoolSize(2));
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    @Test
    void aWrappedBufferSharesTheMemory() {
        ByteBuf buf = PooledByteBufAllocator.DEFAULT.directBuffer(64);
        try {
            buf.writeZero(64);
            Buffer wrapped = VertxInternals.wrap(buf);
            buf.setByte(7, 42);
            assertThat(wrapped.getByte(7)).isEqualTo((byte) 42);
            ByteBuffer view = VertxInternals.nio(wrapped, 0, 64);
            assertThat(view.isDirect()).isTrue();
            view.put(9, (byte) 17);
            assertThat(buf.getByte(9)).isEqualTo((byte) 17);
            assertThat(VertxInternals.unwrap(wrapped).memoryAddress()).isEqualTo(buf.memoryAddress());
        } finally {
            buf.release();
        }
    }

    @Test
    void aRetainedSliceOfASliceKeepsThePooledMemoryAfterItsOwnerReleasedIt() {
        ByteBuf buf = PooledByteBufAllocator.DEFAULT.directBuffer(64);
        buf.writeZero(64);
        buf.setByte(20, 99);
        Buffer slice = VertxInternals.wrap(buf).slice(16, 32);
        // What Vert.x itself hands out cannot be retained: its retain does nothing.
        ByteBuf view = VertxInternals.unwrap(slice);
        view.retain();
        assertThat(buf.refCnt()).isEqualTo(1);
        ByteBuf held = VertxInternals.retainedSlice(slice);
        assertThat(buf.refCnt()).isEqualTo(2);
        assertThat(held.readableBytes()).isEqualTo(16);
        buf.release();
        assertThat(held.refCnt()).isPositive();
        assertThat(held.getByte(4)).isEqualTo((byte) 99);
        held.release();
        assertThat(buf.refCnt()).isZero();
    }

    @Test
    void eachNewEventLoopContextIsNewAndTheyShareTheEventLoops() {
        Context a = VertxInternals.newEventLoopContext(vertx);
        Context b = VertxInternals.newEventLoopContext(vertx);
        assertThat(a).isNotSameAs(b);
        assertThat(a.isEventLoopContext()).isTrue();
        List<Thread> threads = new CopyOnWriteArrayList<>();
        for (Context c : List.of(a, b)) {
            Promise<Void> ran = Promise.promise();
            c.runOnContext(v -> {
                threads.add(Thread.currentThread());
                ran.complete();
            });
            ran.future().await();
        }
        assertThat(threads.get(0)).as("two contexts on two event loops").isNotEqualTo(threads.get(1));
    }

    /** A server whose every connection is a {@link NetSocketConnection} with 1 MiB reads. */
    private int server(Promise<NetSocketConnection> accepted) {
        return vertx.createNetServer().connectHandler(socket -> accepted.tryComplete(
                new NetSocketConnection(socket, MIB, MIB))).listen(0, "127.0.0.1").await().actualPort();
    }

    @Test
    void theInputIsNettysPooledDirectBufferReadUpToTheConfiguredSize() {
        Promise<NetSocketConnection> accepted = Promise.promise();
        int port = server(accepted);
        NetSocket client = netClient().connect(port, "127.0.0.1").await();
        AtomicLong received = new AtomicLong();
        AtomicInteger largest = new AtomicInteger();
        List<Boolean> direct = new CopyOnWriteArrayList<>();
        NetSocketConnection connection = accepted.future().await();
        connection.input().handler(b -> {
            ByteBuf buf = VertxInternals.unwrap(b);
            direct.add(buf.isDirect() && buf.alloc().isDirectBufferPooled());
            largest.accumulateAndGet(b.length(), Math::max);
            received.addAndGet(b.length());
        });
        Buffer chunk = Buffer.buffer(new byte[4 * MIB]);
        for (int i = 0; i < 4; i++) {
            client.write(chunk);
        }
        await("16 MiB arrive").atMost(Duration.ofSeconds(20)).until(() -> received.get() == 16L * MIB);
        assertThat(direct).doesNotContain(false);
        assertThat(largest.get()).as("a read larger than Netty's default 64 KiB").isGreaterThan(64 * 1024);
        client.close().await();
    }

    @Test
    void aPausedInputStopsReadingTheSocketAndResumes() {
        Promise<NetSocketConnection> accepted = Promise.promise();
        int port = server(accepted);
        NetSocket client = netClient().connect(port, "127.0.0.1").await();
        NetSocketConnection connection = accepted.future().await();
        AtomicLong received = new AtomicLong();
        connection.input().handler(b -> {
            received.addAndGet(b.length());
            connection.input().pause();
        });
        AtomicLong written = new AtomicLong();
        Buffer chunk = Buffer.buffer(new byte[MIB]);
        client.setWriteQueueMaxSize(MIB);
        for (int i = 0; i < 64; i++) {
            client.write(chunk).onSuccess(v -> written.addAndGet(chunk.length()));
        }
        // The sender stalls once the socket buffers fill: the paused reader holds back the connection.
        await("the sender is held back").atMost(Duration.ofSeconds(20)).until(() -> {
            long before = written.get();
            return before > 0 && client.writeQueueFull();
        });
        assertThat(received.get()).as("one read before the pause, then nothing").isLessThanOrEqualTo(MIB);
        connection.input().handler(b -> received.addAndGet(b.length()));
        connection.input().resume();
        await("everything arrives after the resume").atMost(Duration.ofSeconds(20))
                .until(() -> received.get() == 64L * MIB);
        client.close().await();
    }

    @Test
    void whatWaitsBehindAPauseArrivesBeforeThePeersEnd() {
        // Vert.x 5.0.7 goes on reading a paused socket (up to 8 reads), and reports the peer's end as soon as it reads
        // it, ahead of the reads it queued (fixed in 5.0.8 and 5.1.2, neither of which the registry serves for the
        // whole stack); the agent's input used to release those reads at the close, losing the peer's last bytes.
        // The input now stops reading at the pause, and delivers the end after what came before it.
        Promise<NetSocketConnection> accepted = Promise.promise();
        int port = vertx.createNetServer().connectHandler(socket -> accepted.tryComplete(
                new NetSocketConnection(socket, MIB, 64 * 1024))).listen(0, "127.0.0.1").await().actualPort();
        NetSocket client = netClient().connect(port, "127.0.0.1").await();
        NetSocketConnection connection = accepted.future().await();
        List<String> seen = new CopyOnWriteArrayList<>();
        AtomicLong received = new AtomicLong();
        connection.input().handler(b -> {
            received.addAndGet(b.length());
            connection.input().pause();
        });
        connection.input().endHandler(v -> seen.add("end after " + received.get()));
        connection.closeHandler(v -> seen.add("close after " + received.get()));
        // Small enough for the socket buffers: the bytes and the FIN are all sent while the reader is paused.
        Buffer chunk = Buffer.buffer(new byte[64 * 1024]);
        for (int i = 0; i < 4; i++) {
            client.write(chunk);
        }
        client.close().await();
        await("the first read").atMost(Duration.ofSeconds(10)).until(() -> received.get() > 0);
        assertThat(received.get()).as("the reader paused after its first read").isLessThan(4L * chunk.length());
        assertThat(seen).as("nothing ends while reads wait").isEmpty();
        connection.input().handler(b -> received.addAndGet(b.length()));
        connection.input().resume();
        await("the end").atMost(Duration.ofSeconds(20)).until(() -> seen.size() == 2);
        assertThat(seen).containsExactly("end after " + 4L * chunk.length(), "close after " + 4L * chunk.length());
    }

    @Test
    void readsWaitingWhenThisSideClosesAPausedConnectionAreReleased() {
        AtomicLong handled = new AtomicLong();
        AtomicInteger closes = new AtomicInteger();
        Promise<NetSocketConnection> accepted = Promise.promise();
        int port = vertx.createNetServer().connectHandler(socket -> {
            NetSocketConnection connection = new NetSocketConnection(socket, MIB, 64 * 1024);
            // Like a destination whose device has fallen behind: it takes one read, then holds the input back.
            connection.input().handler(buf -> {
                handled.addAndGet(buf.length());
                connection.input().pause();
            });
            connection.closeHandler(v -> closes.incrementAndGet());
            accepted.complete(connection);
        }).listen(0, "127.0.0.1").await().actualPort();

        NetSocket client = netClient().connect(port, "127.0.0.1").await();
        AtomicLong sent = new AtomicLong();
        Buffer chunk = Buffer.buffer(new byte[64 * 1024]);
        for (int i = 0; i < 64; i++) {
            client.write(chunk).onSuccess(v -> sent.addAndGet(chunk.length()));
        }
        NetSocketConnection connection = accepted.future().await();
        await("the server read once and the client's writes left it").atMost(Duration.ofSeconds(10))
                .until(() -> handled.get() > 0 && sent.get() >= 16L * chunk.length());

        // Like a destination that gives up on a device that does not catch up: it closes while paused.
        connection.close().await();
        await("the close is reported").atMost(Duration.ofSeconds(10)).until(() -> closes.get() == 1);
        // Only what was read before the pause reached the handler; what waited behind it is released (NoBufferLeaks).
        assertThat(handled.get()).isLessThan(sent.get());
        ByteBufAllocator.DEFAULT.directBuffer(16).release();
    }

    // WebSocket input: the frames as Netty decoded them, handed over from Vert.x's own queue without loss or reorder.

    private static final int FRAME = 4096;
    private static final int FRAMES = 128;

    /** The byte at {@code offset} of what the server sends: a pattern that shows a lost, repeated or swapped frame. */
    private static byte patternAt(long offset) {
        return (byte) (offset * 7 + (offset >>> 12));
    }

    /** Checks the bytes it is given continue the pattern, and counts them. */
    private static final class PatternCheck implements io.vertx.core.Handler<Buffer> {
        final AtomicLong received = new AtomicLong();
        final AtomicReference<String> broken = new AtomicReference<>();
        final List<Boolean> direct = new CopyOnWriteArrayList<>();

        @Override
        public void handle(Buffer b) {
            direct.add(VertxInternals.unwrap(b).isDirect());
            long at = received.get();
            for (int i = 0; i < b.length(); i++) {
                if (b.getByte(i) != patternAt(at + i) && broken.get() == null) {
                    broken.set("byte " + (at + i) + " breaks the pattern");
                }
            }
            received.addAndGet(b.length());
        }

        /** Waits for {@code total} bytes, and checks they continued the pattern, no more and no less. */
        void awaitAll(long total) {
            await("every frame arrives").atMost(Duration.ofSeconds(20))
                    .until(() -> received.get() >= total || broken.get() != null);
            assertThat(broken.get()).isNull();
            assertThat(received.get()).isEqualTo(total);
        }
    }

    /** The {@code f}th frame of the pattern, {@code FRAME} bytes. */
    private static Buffer patternFrame(int f) {
        Buffer frame = Buffer.buffer(FRAME);
        for (int i = 0; i < FRAME; i++) {
            frame.appendByte(patternAt((long) f * FRAME + i));
        }
        return frame;
    }

    /**
     * A WebSocket server that, the moment it accepts, writes {@code FRAMES} frames of the pattern (they go out
     * with the handshake's answer), then {@code afterwards} on the accepted WebSocket.
     */
    private int patternServer(Promise<Void> written, io.vertx.core.Handler<ServerWebSocket> afterwards) {
        HttpServer server = vertx.createHttpServer().requestHandler(request -> request.toWebSocket().onSuccess(ws -> {
            new WebSocketConnection(ws, MIB);
            List<Future<Void>> writes = new ArrayList<>();
            for (int f = 0; f < FRAMES; f++) {
                writes.add(ws.writeBinaryMessage(patternFrame(f)));
            }
            Future.all(writes).onComplete(ar -> {
                written.tryComplete();
                afterwards.handle(ws);
            });
        }));
        return server.listen(0, "127.0.0.1").await().actualPort();
    }

    private Future<WebSocket> wsConnect(int port) {
        WebSocketClient client = vertx.createWebSocketClient();
        wsClients.add(client);
        return client.connect(new WebSocketConnectOptions().setHost("127.0.0.1").setPort(port).setURI("/"));
    }

    /** Connects from a new event-loop context, and has {@code make} make the client's connection there. */
    private WebSocketConnection connectOnAnEventLoop(int port,
            BiFunction<Context, WebSocket, Future<WebSocketConnection>> make) {
        Promise<WebSocketConnection> made = Promise.promise();
        Context context = VertxInternals.newEventLoopContext(vertx);
        context.runOnContext(v -> wsConnect(port).compose(ws -> make.apply(context, ws)).onComplete(made));
        return made.future().await();
    }

    @Test
    void aWebSocketsFramesMadeAtTheConnectArriveWholeAndInOrderWithoutACopy() {
        Promise<Void> written = Promise.promise();
        int port = patternServer(written, ws -> { });
        PatternCheck check = new PatternCheck();
        WebSocketConnection connection = connectOnAnEventLoop(port, (context, ws) -> {
            WebSocketConnection c = new WebSocketConnection(ws, MIB);
            c.input().handler(check);
            return Future.succeededFuture(c);
        });
        assertThat(connection.input()).isInstanceOf(DirectInput.class);
        check.awaitAll((long) FRAMES * FRAME);
        connection.close().await();
    }

    @Test
    void framesVertxHeldForAPausedWebSocketComeFirstAndInOrder() {
        // A WebSocket its owner paused holds what it reads in Vert.x's queue (and pauses the channel once that
        // fills): made into a connection after the server wrote everything, it delivers those frames first, then
        // what the channel still holds.
        Promise<Void> written = Promise.promise();
        int port = patternServer(written, ws -> { });
        PatternCheck check = new PatternCheck();
        WebSocketConnection connection = connectOnAnEventLoop(port, (context, ws) -> {
            ws.pause();
            return written.future().compose(v -> {
                Promise<WebSocketConnection> made = Promise.promise();
                context.runOnContext(x -> {
                    WebSocketConnection c = new WebSocketConnection(ws, MIB);
                    c.input().handler(check);
                    made.complete(c);
                });
                return made.future();
            });
        });
        assertThat(connection.input()).isInstanceOf(DirectInput.class);
        check.awaitAll((long) FRAMES * FRAME);
        assertThat(check.direct).as("Vert.x's copies first").startsWith(false);
        connection.close().await();
    }

    /**
     * A WebSocket server written out by hand, so that the handshake's answer and the first frames leave in one
     * write: {@code small} frames of 100 bytes, then {@code FRAMES} of {@code FRAME} bytes, all of the pattern.
     */
    private int oneWriteServer(int small) {
        return vertx.createNetServer().connectHandler(socket -> {
            Buffer request = Buffer.buffer();
            socket.handler(b -> {
                request.appendBuffer(b);
                String text = request.toString(StandardCharsets.ISO_8859_1);
                if (!text.contains("\r\n\r\n")) {
                    return;
                }
                socket.handler(ignored -> { });
                String key = text.lines().filter(l -> l.toLowerCase(Locale.ROOT).startsWith("sec-websocket-key:"))
                        .map(l -> l.substring(l.indexOf(':') + 1).trim()).findFirst().orElseThrow();
                Buffer out = Buffer.buffer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        + "Connection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n");
                long offset = 0;
                for (int f = 0; f < small + FRAMES; f++) {
                    int length = f < small ? 100 : FRAME;
                    out.appendByte((byte) 0x82);
                    if (length < 126) {
                        out.appendByte((byte) length);
                    } else {
                        out.appendByte((byte) 126).appendShort((short) length);
                    }
                    for (int i = 0; i < length; i++) {
                        out.appendByte(patternAt(offset++));
                    }
                }
                socket.write(out);
            });
        }).listen(0, "127.0.0.1").await().actualPort();
    }

    /** RFC 6455 4.2.2: the server's proof that it read the client's key. */
    private static String acceptKey(String key) {
        try {
            byte[] sha1 = MessageDigest.getInstance("SHA-1").digest(
                    (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").getBytes(StandardCharsets.ISO_8859_1));
            return Base64.getEncoder().encodeToString(sha1);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void framesReadWithTheHandshakesAnswerArriveInOrderWithoutACopy() {
        // The connection is made while Netty is still decoding the read that held the handshake's answer: the frames
        // after it reach the input before Vert.x could hand over anything it held, and wait for the handover.
        int small = 8;
        int port = oneWriteServer(small);
        long total = small * 100L + (long) FRAMES * FRAME;
        PatternCheck check = new PatternCheck();
        WebSocketConnection connection = connectOnAnEventLoop(port, (context, ws) -> {
            WebSocketConnection c = new WebSocketConnection(ws, MIB);
            c.input().handler(check);
            return Future.succeededFuture(c);
        });
        check.awaitAll(total);
        assertThat(check.direct).as("no frame copied").doesNotContain(false);
        connection.close().await();
    }

    @Test
    void aWebSocketConnectionMadeOffItsEventLoopReadsTheWebSocketAsVertxDeliversIt() {
        Promise<Void> written = Promise.promise();
        int port = patternServer(written, ws -> { });
        PatternCheck check = new PatternCheck();
        Promise<WebSocketConnection> made = Promise.promise();
        vertx.deployVerticle(new AbstractVerticle() {
            @Override
            public void start() {
                wsConnect(port).map(ws -> {
                    WebSocketConnection c = new WebSocketConnection(ws, MIB);
                    c.input().handler(check);
                    return c;
                }).onComplete(made);
            }
        }, new DeploymentOptions().setThreadingModel(ThreadingModel.WORKER)).await();
        WebSocketConnection connection = made.future().await();
        assertThat(connection.input()).isNotInstanceOf(DirectInput.class);
        check.awaitAll((long) FRAMES * FRAME);
        connection.close().await();
    }

    /** Connects to {@code port} and sends {@code FRAMES} frames of the pattern. */
    private void sendThePattern(int port) {
        WebSocket ws = wsConnect(port).await();
        for (int f = 0; f < FRAMES; f++) {
            ws.writeBinaryMessage(patternFrame(f));
        }
    }

    /**
     * Accepts one WebSocket with {@code accept} (on the connection's event loop, as the agent's HTTP server does)
     * and makes it a connection whose input feeds {@code check}.
     */
    private Future<WebSocketConnection> acceptOne(PatternCheck check,
            java.util.function.Consumer<io.vertx.core.Handler<ServerWebSocket>> accept) {
        Promise<WebSocketConnection> made = Promise.promise();
        accept.accept(ws -> {
            WebSocketConnection c = new WebSocketConnection(ws, MIB);
            c.input().handler(check);
            made.complete(c);
        });
        return made.future();
    }

    @Test
    void anAcceptedWebSocketsFramesArriveWholeAndInOrderWithoutACopy() {
        // The destination's side: the agent serves its stream path ahead of the router, on the plain request.
        PatternCheck check = new PatternCheck();
        HttpServer server = vertx.createHttpServer();
        Future<WebSocketConnection> accepted = acceptOne(check, handler -> server.requestHandler(request ->
                request.toWebSocket().onSuccess(handler::handle)));
        sendThePattern(server.listen(0, "127.0.0.1").await().actualPort());
        WebSocketConnection connection = accepted.await();
        assertThat(connection.input()).isInstanceOf(DirectInput.class);
        check.awaitAll((long) FRAMES * FRAME);
        assertThat(check.direct).as("no frame copied").doesNotContain(false);
        connection.close().await();
    }

    @Test
    void aWebSocketAcceptedThroughTheRouterIsReadAsVertxDeliversIt() {
        // Vert.x Web hands out a wrapper of its own, not Vert.x's WebSocket: the connection reads it as it is
        // (the second attempt at the direct input cast it, and the destination never answered).
        PatternCheck check = new PatternCheck();
        HttpServer server = vertx.createHttpServer();
        Future<WebSocketConnection> accepted = acceptOne(check, handler -> {
            io.vertx.ext.web.Router router = io.vertx.ext.web.Router.router(vertx);
            router.get("/").handler(rc -> rc.request().toWebSocket().onSuccess(handler::handle));
            server.requestHandler(router);
        });
        sendThePattern(server.listen(0, "127.0.0.1").await().actualPort());
        WebSocketConnection connection = accepted.await();
        assertThat(connection.input()).isNotInstanceOf(DirectInput.class);
        check.awaitAll((long) FRAMES * FRAME);
        connection.close().await();
    }

    @Test
    void aPausedWebSocketInputHoldsThePeerBackAndItsEndComesAfterWhatWaited() {
        Promise<Void> written = Promise.promise();
        AtomicReference<ServerWebSocket> server = new AtomicReference<>();
        int port = patternServer(written, server::set);
        AtomicLong received = new AtomicLong();
        List<String> seen = new CopyOnWriteArrayList<>();
        WebSocketConnection connection = connectOnAnEventLoop(port, (context, ws) -> {
            WebSocketConnection c = new WebSocketConnection(ws, MIB);
            c.input().handler(b -> {
                received.addAndGet(b.length());
                c.input().pause();
            });
            c.input().endHandler(v -> seen.add("end after " + received.get()));
            c.closeHandler(v -> seen.add("close after " + received.get()));
            return Future.succeededFuture(c);
        });
        await("the first frame").atMost(Duration.ofSeconds(10)).until(() -> received.get() > 0);
        // The server goes on writing while the client reads nothing: its queue fills and stays full.
        await("the server wrote its frames").atMost(Duration.ofSeconds(20)).until(() -> server.get() != null);
        ServerWebSocket peer = server.get();
        Buffer more = Buffer.buffer(new byte[64 * 1024]);
        peer.setWriteQueueMaxSize(MIB);
        vertx.setPeriodic(1, id -> {
            if (peer.writeQueueFull() || peer.isClosed()) {
                vertx.cancelTimer(id);
            } else {
                peer.writeBinaryMessage(more);
            }
        });
        await("the paused reader holds the server back").atMost(Duration.ofSeconds(20))
                .until(peer::writeQueueFull);
        assertThat(received.get()).as("one frame, then nothing while paused").isEqualTo(FRAME);
        assertThat(seen).isEmpty();
        peer.close();
        connection.input().handler(b -> received.addAndGet(b.length()));
        connection.input().resume();
        await("the end").atMost(Duration.ofSeconds(20)).until(() -> seen.size() == 2);
        assertThat(received.get()).as("the frames and the server's queue that waited").isGreaterThan(FRAME + MIB);
        assertThat(seen).containsExactly("end after " + received.get(), "close after " + received.get());
    }

    /** A client connection made on {@code context}, so its socket lives on that context's event loop. */
    private static NetSocketConnection connectOn(Context context, NetClient client, int port, int writeQueueMaxSize) {
        Promise<NetSocketConnection> connected = Promise.promise();
        context.runOnContext(v -> client.connect(port, "127.0.0.1")
                .map(socket -> new NetSocketConnection(socket, writeQueueMaxSize, MIB)).onComplete(connected));
        return connected.future().await();
    }

    /**
     * On {@code context}, the socket's event loop, as the agent writes: 1 MiB writes in one synchronous run, as a
     * pipe makes them with reads waiting, until the queue is full (or 256 MiB went); then {@code onDrain} waits for
     * room. Returns the bytes written.
     */
    private static long fillUntilFull(Context context, WriteStream<Buffer> out, Handler<Void> onDrain) {
        Buffer chunk = Buffer.buffer(new byte[MIB]);
        Promise<Long> full = Promise.promise();
        context.runOnContext(v -> {
            long written = 0;
            while (!out.writeQueueFull() && written < 256L * MIB) {
                out.write(chunk);
                written += MIB;
            }
            out.drainHandler(onDrain);
            full.complete(written);
        });
        return full.future().await();
    }

    @Test
    void aTlsSocketsOutputIsFullOnceItsChannelIsAndDrainsWhenThePeerReads() {
        // Vert.x 5.0.7 reports a TLS socket's queue full from a flag a deferred writability event updates: a writer on
        // the socket's event loop went on to 2 GiB into Netty's outbound buffer with a peer that read nothing.
        SelfSignedCertificate cert = SelfSignedCertificate.create();
        AtomicReference<NetSocket> accepted = new AtomicReference<>();
        AtomicLong received = new AtomicLong();
        int port = vertx.createNetServer(new NetServerOptions().setSsl(true).setKeyCertOptions(cert.keyCertOptions())
                .setSslEngineOptions(TlsMaterial.engine())).connectHandler(socket -> {
                    socket.pause();
                    socket.handler(b -> received.addAndGet(b.length()));
                    accepted.set(socket);
                }).listen(0, "127.0.0.1").await().actualPort();
        NetClient client = vertx.createNetClient(new NetClientOptions().setSsl(true).setTrustAll(true)
                .setHostnameVerificationAlgorithm("").setSslEngineOptions(TlsMaterial.engine()));
        clients.add(client);
        Context context = VertxInternals.newEventLoopContext(vertx);
        NetSocketConnection connection = connectOn(context, client, port, 4 * MIB);
        WriteStream<Buffer> out = connection.output();
        Promise<Void> drained = Promise.promise();
        long written = fillUntilFull(context, out, d -> drained.tryComplete());
        assertThat(written).as("bytes written before the queue was full (high-water mark 4 MiB)")
                .isLessThanOrEqualTo(16L * MIB);
        await("the server connected").atMost(Duration.ofSeconds(10)).until(() -> accepted.get() != null);
        accepted.get().resume();
        await("the drain").atMost(Duration.ofSeconds(20)).until(() -> drained.future().isComplete());
        await("everything written arrives").atMost(Duration.ofSeconds(20)).until(() -> received.get() == written);
        connection.close().await();
        // Netty calls a closed channel not writable; waiting for its drain would wait for ever (a relay's channel
        // whose hypervisor had gone stayed open so): a closed output is not full, its writes fail instead.
        assertThat(out.writeQueueFull()).as("a closed socket's output is full").isFalse();
    }

    @Test
    void aWriterWaitingForRoomIsWokenWhenThePeerCloses() {
        // Netty calls a closed channel not writable and fires no writability change for the close: a writer waiting
        // for a drain would wait for ever; it is woken, and its next write fails with the reason.
        Promise<NetSocketConnection> accepted = Promise.promise();
        int port = server(accepted);
        Context context = VertxInternals.newEventLoopContext(vertx);
        WriteStream<Buffer> out = connectOn(context, netClient(), port, MIB).output();
        NetSocketConnection peer = accepted.future().await();
        peer.input().pause();
        Promise<Void> woken = Promise.promise();
        assertThat(fillUntilFull(context, out, d -> woken.tryComplete())).as("bytes written before the queue was full")
                .isLessThan(256L * MIB);
        // The peer reads nothing: no drain comes while it holds the connection back.
        Promise<Void> looked = Promise.promise();
        context.runOnContext(v -> looked.complete());
        looked.future().await();
        assertThat(woken.future().isComplete()).as("woken while the peer still holds it back").isFalse();
        peer.close();
        await("the writer is woken").atMost(Duration.ofSeconds(20)).until(() -> woken.future().isComplete());
        Promise<Void> next = Promise.promise();
        context.runOnContext(v -> out.write(Buffer.buffer(new byte[MIB])).onComplete(next));
        await("the next write ends").atMost(Duration.ofSeconds(20)).until(() -> next.future().isComplete());
        assertThat(next.future().failed()).as("a write after the close").isTrue();
    }
}
