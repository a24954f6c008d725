package io.vfioproxy.bench;

import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.relay.RelayPhase;
import io.vfioproxy.relay.RelayRecord;
import io.vfioproxy.relay.RelayRequest;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * The relay's data path against the same bytes through a chain of two socat processes, in one run: a writer on a
 * unix socket, the two agents on loopback (unix to agent TCP to unix, both ways relayed, the source observing the
 * stream), a reader on a unix socket; then writer, {@code socat UNIX-LISTEN TCP}, {@code socat TCP-LISTEN
 * UNIX-CONNECT}, reader. Nothing else is done with the bytes.
 */
public final class RelayBench implements AutoCloseable {

    private static final int BUFFER = 1 << 20;

    /** Each agent's Vert.x, as on two nodes: sharing one, both agents' sockets could land on one event loop. */
    private final Vertx sourceVertx;
    private final Vertx destinationVertx;
    private final Path dir;
    private final AgentVerticle source;
    private final AgentVerticle destination;
    private final ExecutorService threads = Executors.newFixedThreadPool(2);

    /** Held, so the level set on it stays: a logger nothing references may be collected and forget it. */
    private final java.util.logging.Logger relayLog = java.util.logging.Logger.getLogger("io.vfioproxy.relay");

    public RelayBench() throws IOException {
        // A line per relay started and ended would interleave with the results.
        relayLog.setLevel(java.util.logging.Level.WARNING);
        dir = Files.createTempDirectory("vmp-relay-bench");
        sourceVertx = Vertx.vertx();
        destinationVertx = Vertx.vertx();
        source = LoopbackAgent.named("bench-src").withoutApi().start(sourceVertx);
        destination = LoopbackAgent.named("bench-dst").withoutApi()
                .merge("relay", new JsonObject().put("allowedTargets", new JsonArray().add("unix:" + dir + "/")))
                .start(destinationVertx);
    }

    /** One run's seconds and the peak memory the two agents' JVM held (heap, direct). */
    public record Run(double seconds, long peakHeap, long peakDirect) {
    }

    /** Moves {@code bytes} through a relay of the two agents; the writer's connect to the reader's last byte. */
    public Run relay(long bytes) throws Exception {
        Path sink = dir.resolve("sink-" + System.nanoTime() + ".sock");
        try (ServerSocketChannel reader = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            reader.bind(UnixDomainSocketAddress.of(sink));
            RelayRecord relay = source.relays().start(RelayRequest.fromJson(new JsonObject()
                    .put("destination", "127.0.0.1:" + destination.streamPort()).put("target", "unix:" + sink)
                    .put("channels", 1))).await();
            String listen = relay.status().listen().substring("unix:".length());
            try (MemorySampler memory = new MemorySampler()) {
                double seconds = move(bytes, reader, () -> SocketChannel.open(UnixDomainSocketAddress.of(listen)));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (!relay.status().phase().isTerminal() && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                if (relay.status().phase() != RelayPhase.COMPLETED) {
                    throw new IOException("the relay did not complete: " + relay.toJson().encode());
                }
                return new Run(seconds, memory.peakHeap(), memory.peakDirect());
            }
        } finally {
            Files.deleteIfExists(sink);
        }
    }

    /** The same bytes through {@code socat UNIX-LISTEN:a TCP:p} and {@code socat TCP-LISTEN:p UNIX-CONNECT:b}. */
    public double socatChain(Path socat, long bytes) throws Exception {
        Path sink = dir.resolve("socat-sink-" + System.nanoTime() + ".sock");
        Path entry = dir.resolve("socat-entry-" + System.nanoTime() + ".sock");
        int port;
        try (ServerSocketChannel probe = ServerSocketChannel.open()) {
            probe.bind(new InetSocketAddress("127.0.0.1", 0));
            port = ((InetSocketAddress) probe.getLocalAddress()).getPort();
        }
        List<Process> chain = new ArrayList<>();
        try (ServerSocketChannel reader = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            reader.bind(UnixDomainSocketAddress.of(sink));
            chain.add(new ProcessBuilder(socat.toString(), "-b", Integer.toString(BUFFER),
                    "TCP-LISTEN:" + port + ",bind=127.0.0.1,reuseaddr", "UNIX-CONNECT:" + sink)
                    .redirectErrorStream(true).start());
            // The second socat connects as soon as the first one is connected to: wait until the first listens.
            awaitListening(port);
            chain.add(new ProcessBuilder(socat.toString(), "-b", Integer.toString(BUFFER), "UNIX-LISTEN:" + entry,
                    "TCP:127.0.0.1:" + port).redirectErrorStream(true).start());
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (!Files.exists(entry) && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            return move(bytes, reader, () -> SocketChannel.open(UnixDomainSocketAddress.of(entry)));
        } finally {
            for (Process p : chain) {
                p.destroy();
                p.waitFor(10, TimeUnit.SECONDS);
            }
            Files.deleteIfExists(sink);
            Files.deleteIfExists(entry);
        }
    }

    /** Waits until something listens on loopback {@code port}, without connecting to it (/proc/net/tcp). */
    private static void awaitListening(int port) throws Exception {
        String hex = String.format(":%04X ", port);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < deadline) {
            for (String line : Files.readAllLines(Path.of("/proc/net/tcp"))) {
                // local_address is the second column; state 0A is LISTEN.
                String[] f = line.trim().split("\\s+");
                if (f.length > 3 && f[1].endsWith(hex.trim()) && f[3].equals("0A")) {
                    return;
                }
            }
            Thread.sleep(5);
        }
        throw new IOException("socat did not listen on port " + port);
    }

    /** Connection opener that may fail. */
    private interface Opener {
        SocketChannel open() throws IOException;
    }

    /** Writes {@code bytes} into what {@code open} connects to, reads them from {@code reader}; seconds. */
    private double move(long bytes, ServerSocketChannel reader, Opener open) throws Exception {
        long start = System.nanoTime();
        Future<Long> received = threads.submit(() -> {
            try (SocketChannel in = reader.accept()) {
                ByteBuffer buf = ByteBuffer.allocateDirect(BUFFER);
                long total = 0;
                int n;
                while ((n = in.read(buf.clear())) >= 0) {
                    total += n;
                }
                return total;
            }
        });
        Future<?> sent = threads.submit(() -> {
            try (SocketChannel out = open.open()) {
                ByteBuffer buf = ByteBuffer.allocateDirect(BUFFER);
                long left = bytes;
                while (left > 0) {
                    buf.clear().limit((int) Math.min(BUFFER, left));
                    while (buf.hasRemaining()) {
                        left -= out.write(buf);
                    }
                }
            }
            return null;
        });
        sent.get(10, TimeUnit.MINUTES);
        long got = received.get(10, TimeUnit.MINUTES);
        if (got != bytes) {
            throw new IOException("moved " + got + " of " + bytes + " bytes");
        }
        return (System.nanoTime() - start) / 1e9;
    }

    @Override
    public void close() throws Exception {
        threads.shutdownNow();
        threads.awaitTermination(10, TimeUnit.SECONDS);
        sourceVertx.close().await();
        destinationVertx.close().await();
    }
}
