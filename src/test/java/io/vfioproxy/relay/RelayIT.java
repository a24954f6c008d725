package io.vfioproxy.relay;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.net.NetClient;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.testing.NoBufferLeaks;
import io.vfioproxy.testing.RawPeer;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Relays between two agents on loopback, with unix sockets standing in for the hypervisors (QEMU itself in
 * QemuRelayIT): bytes both ways, the end of each direction, backpressure, refused targets, cancel, the order of
 * channels, the listen socket's mode.
 */
@ExtendWith(NoBufferLeaks.class)
class RelayIT {

    private static final long MIB = 1 << 20;

    @TempDir
    Path dir;
    private Vertx vertx;
    private AgentVerticle source;
    private AgentVerticle destination;
    private final List<AutoCloseable> closing = new ArrayList<>();

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        source = LoopbackAgent.named("src").withoutApi().start(vertx);
        destination = LoopbackAgent.named("dst").withoutApi()
                .merge("relay", new JsonObject().put("allowedTargets", new JsonArray().add("unix:" + dir + "/")))
                .start(vertx);
    }

    @AfterEach
    void stop() throws Exception {
        for (AutoCloseable c : closing) {
            c.close();
        }
        vertx.close().await();
    }

    private RelayRecord relay(JsonObject request) {
        return source.relays().start(RelayRequest.fromJson(request.put("destination",
                "127.0.0.1:" + destination.streamPort()))).await();
    }

    private ServerSocketChannel listen(Path path) throws IOException {
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(path));
        closing.add(server);
        return server;
    }

    private SocketChannel connect(String listen) throws IOException {
        SocketChannel c = SocketChannel.open(UnixDomainSocketAddress.of(listen.substring("unix:".length())));
        closing.add(c);
        return c;
    }

    private static RelayStatus ended(RelayRecord record) {
        return await("relay " + record.id() + " ended").atMost(Duration.ofSeconds(60))
                .until(record::status, s -> s.phase().isTerminal());
    }

    private RelayRecord destinationRecord(String id) {
        return await("the destination knows relay " + id).atMost(Duration.ofSeconds(30))
                .until(() -> destination.relays().find(id), r -> r != null);
    }

    /** Reads {@code channel} to its end; returns the bytes' SHA-256 and count. */
    private static String drain(SocketChannel channel, AtomicLong count) throws Exception {
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        ByteBuffer buf = ByteBuffer.allocate(256 << 10);
        while (channel.read(buf.clear()) >= 0) {
            buf.flip();
            count.addAndGet(buf.remaining());
            sha.update(buf);
        }
        return HexFormat.of().formatHex(sha.digest());
    }

    @Test
    void relaysBothWaysAndCompletesWhenBothHypervisorsClosed() throws Exception {
        Path target = dir.resolve("incoming.sock");
        ServerSocketChannel hypervisorB = listen(target);
        RelayRecord relay = relay(new JsonObject().put("target", "unix:" + target));
        String listen = relay.status().listen();
        assertThat(relay.status().phase()).isEqualTo(RelayPhase.LISTENING);
        // Only the agent's user can connect.
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(Path.of(listen.substring(5)))))
                .isEqualTo("rw-------");

        byte[] stream = new byte[(int) (24 * MIB)];
        new Random(7).nextBytes(stream);
        byte[] reply = "return path: 0x1234".getBytes();
        AtomicLong arrived = new AtomicLong();
        CompletableFuture<String> destinationSide = CompletableFuture.supplyAsync(() -> {
            try (SocketChannel in = hypervisorB.accept()) {
                in.write(ByteBuffer.wrap(reply));
                return drain(in, arrived);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        SocketChannel hypervisorA = connect(listen);
        CompletableFuture<String> replies = CompletableFuture.supplyAsync(() -> {
            try {
                return new String(readAll(hypervisorA));
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        ByteBuffer out = ByteBuffer.wrap(stream);
        while (out.hasRemaining()) {
            hypervisorA.write(out);
        }
        hypervisorA.shutdownOutput();
        assertThat(destinationSide.get(60, TimeUnit.SECONDS)).isEqualTo(sha(stream));
        assertThat(replies.get(60, TimeUnit.SECONDS)).isEqualTo(new String(reply));

        RelayStatus done = ended(relay);
        assertThat(done.phase()).as(done.toJson().encode()).isEqualTo(RelayPhase.COMPLETED);
        assertThat(done.toDestination()).isEqualTo(stream.length);
        assertThat(done.toSource()).isEqualTo(reply.length);
        assertThat(done.channels()).singleElement().satisfies(c -> {
            assertThat(c.kind()).isEqualTo("unknown");
            assertThat(c.state()).isEqualTo("ended");
        });
        RelayStatus atDestination = ended(destinationRecord(relay.id()));
        assertThat(atDestination.phase()).isEqualTo(RelayPhase.COMPLETED);
        assertThat(atDestination.toDestination()).isEqualTo(stream.length);
        // The listen socket goes with the relay.
        await("socket removed").atMost(Duration.ofSeconds(10)).until(() -> !Files.exists(Path.of(listen.substring(5))));
    }

    /** The peer closed: the next read ends the stream (or finds it reset, where unread bytes were dropped). */
    private static boolean closedByPeer(SocketChannel c) {
        try {
            return c.read(ByteBuffer.allocate(1)) == -1;
        } catch (IOException e) {
            return e.getMessage() != null && e.getMessage().contains("reset");
        }
    }

    private static byte[] readAll(SocketChannel c) throws IOException {
        java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
        ByteBuffer buf = ByteBuffer.allocate(4096);
        while (c.read(buf.clear()) >= 0) {
            all.write(buf.array(), 0, buf.position());
        }
        return all.toByteArray();
    }

    private static String sha(byte[] bytes) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
    }

    @Test
    void aTargetTheDestinationDoesNotAllowIsRefusedBeforeAnythingListensOrConnects() throws Exception {
        Path elsewhere = Files.createTempDirectory("not-allowed");
        Path target = elsewhere.resolve("incoming.sock");
        ServerSocketChannel hypervisorB = listen(target);
        hypervisorB.configureBlocking(false);
        // The source asks the destination first: the hypervisor is never told where to migrate.
        assertThatThrownBy(() -> relay(new JsonObject().put("target", "unix:" + target)))
                .isInstanceOfSatisfying(RelayService.Rejected.class, e -> {
                    assertThat(e.status()).isEqualTo(409);
                    assertThat(e.getMessage()).contains("refused the relay: agent dst: target unix:" + target
                            + " is not under any of relay.allowedTargets");
                });
        assertThat(source.relays().all()).isEmpty();
        // A link inside the allowed tree that points out of it is refused too.
        Path link = dir.resolve("link");
        Files.createSymbolicLink(link, elsewhere);
        assertThatThrownBy(() -> relay(new JsonObject().put("target", "unix:" + link + "/incoming.sock")))
                .hasMessageContaining("is not under any of relay.allowedTargets");
        // A source that does not ask is refused channel by channel, before the destination connects anything.
        RawPeer peer = RawPeer.connect(vertx, destination.streamPort());
        peer.send(io.vfioproxy.stream.Frames.control(io.vfioproxy.stream.FrameType.RELAY_OPEN, 0, new JsonObject()
                .put("protocol", io.vfioproxy.stream.Frames.PROTOCOL_VERSION).put("relay", "r-raw").put("channel", 0)
                .put("target", "unix:" + target), 0));
        assertThat(peer.await(io.vfioproxy.stream.FrameType.REFUSE).getString("reason"))
                .contains("is not under any of relay.allowedTargets");
        peer.awaitClosed();
        assertThat(hypervisorB.accept()).as("nobody connected to the target").isNull();
    }

    @Test
    void aDestinationThatStopsReadingStopsTheSourceHypervisorWithBoundedMemory() throws Exception {
        Path target = dir.resolve("slow.sock");
        ServerSocketChannel hypervisorB = listen(target);
        RelayRecord relay = relay(new JsonObject().put("target", "unix:" + target));
        SocketChannel hypervisorA = connect(relay.status().listen());
        SocketChannel stalled = hypervisorB.accept();
        closing.add(stalled);
        // The source writes as fast as it can; the destination reads nothing.
        hypervisorA.configureBlocking(false);
        ByteBuffer chunk = ByteBuffer.allocate((int) MIB);
        AtomicLong written = new AtomicLong();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        long stuckSince = -1;
        while (System.nanoTime() < deadline) {
            int n = hypervisorA.write(chunk.clear());
            written.addAndGet(n);
            if (n > 0) {
                stuckSince = -1;
            } else if (stuckSince < 0) {
                stuckSince = System.nanoTime();
            } else if (System.nanoTime() - stuckSince > TimeUnit.MILLISECONDS.toNanos(500)) {
                break;
            }
            if (written.get() > 512 * MIB) {
                break;
            }
            if (n == 0) {
                Thread.onSpinWait();
                Thread.sleep(1);
            }
        }
        // What the kernel's socket buffers, the two agents' queues and one frame hold: megabytes, not the stream.
        assertThat(written.get()).as("bytes the source hypervisor could write while nothing was read")
                .isLessThan(64 * MIB);
        source.relays().find(relay.id());
        // Reading again lets it all through.
        hypervisorA.configureBlocking(true);
        CompletableFuture<Long> reader = CompletableFuture.supplyAsync(() -> {
            AtomicLong n = new AtomicLong();
            try {
                drain(stalled, n);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            return n.get();
        });
        hypervisorA.write(chunk.clear());
        hypervisorA.close();
        assertThat(reader.get(60, TimeUnit.SECONDS)).isEqualTo(written.get() + MIB);
        stalled.close();
        assertThat(ended(relay).phase()).isEqualTo(RelayPhase.COMPLETED);
    }

    @Test
    void aCancelClosesEveryChannelAtOnceOnBothSides() throws Exception {
        Path target = dir.resolve("cancel.sock");
        ServerSocketChannel hypervisorB = listen(target);
        RelayRecord relay = relay(new JsonObject().put("target", "unix:" + target));
        SocketChannel main = connect(relay.status().listen());
        main.write(ByteBuffer.wrap(new byte[] {'m'}));
        SocketChannel atTarget = hypervisorB.accept();
        closing.add(atTarget);
        assertThat(atTarget.read(ByteBuffer.allocate(1))).isEqualTo(1);
        source.relays().cancel(relay.id()).await();
        RelayStatus cancelled = ended(relay);
        assertThat(cancelled.phase()).isEqualTo(RelayPhase.CANCELLED);
        assertThat(cancelled.error()).isEqualTo("cancelled through the API of agent src");
        assertThat(closedByPeer(main)).isTrue();
        assertThat(closedByPeer(atTarget)).isTrue();
        RelayStatus there = ended(destinationRecord(relay.id()));
        assertThat(there.phase()).isEqualTo(RelayPhase.FAILED);
        assertThat(there.error()).contains("aborted the relay: cancelled through the API of agent src");
        assertThatThrownBy(() -> source.relays().cancel(relay.id()).await())
                .hasMessage("relay " + relay.id() + " has ended: cancelled");
    }

    @Test
    void channelsReachTheTargetInTheOrderTheHypervisorOpenedThem() throws Exception {
        Path target = dir.resolve("ordered.sock");
        ServerSocketChannel hypervisorB = listen(target);
        RelayRecord relay = relay(new JsonObject().put("target", "unix:" + target).put("channels", 3));
        List<SocketChannel> opened = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            SocketChannel c = connect(relay.status().listen());
            // Each writes its index at once; the agents may open them to the destination in any order.
            c.write(ByteBuffer.wrap(new byte[] {(byte) i}));
            opened.add(c);
            await("channel " + i + " accepted").atMost(Duration.ofSeconds(30))
                    .until(() -> relay.status().channels().size() > opened.size() - 1);
        }
        SocketChannel extra = connect(relay.status().listen());
        assertThat(closedByPeer(extra)).as("a fourth connection is refused").isTrue();
        // All three accepted before any closes: what this checks is their order (a late one is the next test's).
        List<SocketChannel> atTarget = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            SocketChannel accepted = hypervisorB.accept();
            closing.add(accepted);
            atTarget.add(accepted);
            ByteBuffer first = ByteBuffer.allocate(1);
            assertThat(accepted.read(first)).isEqualTo(1);
            assertThat(first.get(0)).as("connection " + i + " at the target").isEqualTo((byte) i);
        }
        for (SocketChannel accepted : atTarget) {
            accepted.close();
        }
        opened.forEach(c -> {
            try {
                c.close();
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        });
        assertThat(ended(relay).phase()).isEqualTo(RelayPhase.COMPLETED);
    }

    @Test
    void aChannelWhoseOpenReachesTheDestinationAfterTheOthersEndedIsStillRelayed() throws Exception {
        // A proxy to the destination agent that passes the probe and channels 0 and 1, and holds channel 2's
        // connection until released: its RELAY_OPEN arrives after the first two channels ended there.
        AtomicInteger connections = new AtomicInteger();
        Promise<Void> release = Promise.promise();
        NetClient client = vertx.createNetClient();
        int port = vertx.createNetServer().connectHandler(in -> {
            in.pause();
            Future<Void> go = connections.incrementAndGet() <= 3 ? Future.succeededFuture() : release.future();
            go.compose(v -> client.connect(destination.streamPort(), "127.0.0.1")).onSuccess(out -> {
                in.pipeTo(out);
                out.pipeTo(in);
            });
        }).listen(0, "127.0.0.1").await().actualPort();
        Path target = dir.resolve("late.sock");
        ServerSocketChannel hypervisorB = listen(target);
        RelayRecord relay = source.relays().start(RelayRequest.fromJson(new JsonObject()
                .put("destination", "127.0.0.1:" + port).put("target", "unix:" + target).put("channels", 3)))
                .await();
        List<SocketChannel> opened = new ArrayList<>();
        List<SocketChannel> atTarget = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            SocketChannel c = connect(relay.status().listen());
            c.write(ByteBuffer.wrap(new byte[] {(byte) i}));
            opened.add(c);
            SocketChannel accepted = hypervisorB.accept();
            closing.add(accepted);
            atTarget.add(accepted);
            // Read before it closes: a socket closed with unread bytes resets, and the relay fails.
            assertThat(accepted.read(ByteBuffer.allocate(1))).isEqualTo(1);
        }
        SocketChannel late = connect(relay.status().listen());
        late.write(ByteBuffer.wrap(new byte[] {2}));
        await("channel 2's connection held").atMost(Duration.ofSeconds(30)).until(() -> connections.get() == 4);
        for (int i = 0; i < 2; i++) {
            atTarget.get(i).close();
            opened.get(i).close();
        }
        RelayRecord there = destinationRecord(relay.id());
        await("channels 0 and 1 ended at the destination").atMost(Duration.ofSeconds(30))
                .until(() -> there.status().channels().stream().filter(c -> c.state().equals("ended")).count() == 2);
        assertThat(there.status().phase()).as("the destination waits for the channel the source announced")
                .isEqualTo(RelayPhase.RELAYING);
        release.complete();
        SocketChannel third = hypervisorB.accept();
        closing.add(third);
        ByteBuffer first = ByteBuffer.allocate(1);
        assertThat(third.read(first)).isEqualTo(1);
        assertThat(first.get(0)).as("the late channel at the target").isEqualTo((byte) 2);
        third.close();
        late.close();
        assertThat(ended(relay).phase()).isEqualTo(RelayPhase.COMPLETED);
        assertThat(ended(there).phase()).isEqualTo(RelayPhase.COMPLETED);
        assertThat(ended(there).channels()).extracting(RelayStatus.Channel::state)
                .containsExactly("ended", "ended", "ended");
    }

    @Test
    void relaysStartAndCancelThroughTheEventBusToo() {
        AgentVerticle withApi = LoopbackAgent.named("src-bus").start(vertx);
        io.vertx.core.json.JsonObject started = vertx.eventBus().<JsonObject>request(
                io.vfioproxy.api.Events.command("src-bus", "relay"), new JsonObject()
                        .put("destination", "127.0.0.1:" + destination.streamPort())
                        .put("target", "unix:" + dir + "/bus.sock")).await().body();
        assertThat(started.getString("phase")).isEqualTo("LISTENING");
        assertThat(started.getString("listen")).startsWith("unix:");
        JsonObject cancelled = vertx.eventBus().<JsonObject>request(io.vfioproxy.api.Events.command("src-bus",
                "cancel-relay"), new JsonObject().put("relay", started.getString("id"))).await().body();
        assertThat(cancelled.getString("id")).isEqualTo(started.getString("id"));
        assertThat(ended(withApi.relays().find(started.getString("id"))).phase()).isEqualTo(RelayPhase.CANCELLED);
        assertThatThrownBy(() -> vertx.eventBus().request(io.vfioproxy.api.Events.command("src-bus", "relay"),
                new JsonObject().put("destination", "127.0.0.1:1").put("target", "nope")).await())
                .isInstanceOfSatisfying(io.vertx.core.eventbus.ReplyException.class,
                        e -> assertThat(e.failureCode()).isEqualTo(400));
    }

    @Test
    void aRelayListensOnLoopbackOnly() {
        assertThatThrownBy(() -> relay(new JsonObject().put("target", "unix:" + dir + "/x.sock")
                .put("listen", "tcp:0.0.0.0:0"))).hasMessageContaining("a relay listens on this host only");
        RelayRecord tcp = relay(new JsonObject().put("target", "unix:" + dir + "/x.sock")
                .put("listen", "tcp:127.0.0.1:0"));
        assertThat(tcp.status().listen()).matches("tcp:127\\.0\\.0\\.1:[1-9][0-9]*");
        source.relays().cancel(tcp.id()).await();
        assertThat(ended(tcp).phase()).isEqualTo(RelayPhase.CANCELLED);
    }

    @Test
    void theRelayCommandStartsOneSaysWhereToMigrateAndFollowsItToItsEnd() throws Exception {
        AgentVerticle withApi = LoopbackAgent.named("src-api").start(vertx);
        Path target = dir.resolve("cli.sock");
        ServerSocketChannel hypervisorB = listen(target);
        java.io.PrintStream saved = System.out;
        java.io.ByteArrayOutputStream printed = new java.io.ByteArrayOutputStream();
        System.setOut(new java.io.PrintStream(printed, true, java.nio.charset.StandardCharsets.UTF_8));
        try {
            CompletableFuture<Integer> exit = CompletableFuture.supplyAsync(() -> io.vfioproxy.cli.Main.run("relay",
                    "--agent", "http://127.0.0.1:" + withApi.apiPort(), "--to", "127.0.0.1:" + destination.streamPort(),
                    "--target", "unix:" + target));
            String listen = await("the listen address is printed").atMost(Duration.ofSeconds(30)).until(() -> {
                java.util.regex.Matcher m = java.util.regex.Pattern.compile("listens on (unix:\\S+):")
                        .matcher(printed.toString(java.nio.charset.StandardCharsets.UTF_8));
                return m.find() ? m.group(1) : null;
            }, l -> l != null);
            SocketChannel hypervisorA = connect(listen);
            hypervisorA.write(ByteBuffer.wrap(new byte[] {'Q', 'E', 'V', 'M', 0, 0, 0, 3}));
            hypervisorA.close();
            try (SocketChannel in = hypervisorB.accept()) {
                assertThat(drain(in, new AtomicLong())).isNotEmpty();
            }
            assertThat(exit.get(60, TimeUnit.SECONDS)).isEqualTo(1);
        } finally {
            System.setOut(saved);
        }
        // QEMU's stream began and stopped: the relay says the source hypervisor's migration did not complete.
        assertThat(printed.toString(java.nio.charset.StandardCharsets.UTF_8)).contains(" failed: 8 B to the destination")
                .contains("closed its main channel before the end of its stream");
    }
}
