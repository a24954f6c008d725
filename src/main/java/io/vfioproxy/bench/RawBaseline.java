package io.vfioproxy.bench;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * What the machine can do without the agent: the same number of bytes over a loopback TCP connection with plain
 * Java NIO, one thread writing from a direct buffer, one reading into one. Nothing else is done with the bytes.
 */
public final class RawBaseline {

    private RawBaseline() {
    }

    /** Moves {@code bytes} over loopback and returns the seconds it took, connect to last byte read. */
    public static double nio(long bytes, int bufferSize) throws IOException, InterruptedException {
        ExecutorService threads = Executors.newFixedThreadPool(2);
        try (ServerSocketChannel server = ServerSocketChannel.open()) {
            server.bind(new InetSocketAddress("127.0.0.1", 0));
            int port = ((InetSocketAddress) server.getLocalAddress()).getPort();
            long start = System.nanoTime();
            Future<Long> received = threads.submit(() -> {
                try (SocketChannel in = server.accept()) {
                    ByteBuffer buf = ByteBuffer.allocateDirect(bufferSize);
                    long total = 0;
                    while (total < bytes) {
                        buf.clear();
                        int n = in.read(buf);
                        if (n < 0) {
                            break;
                        }
                        total += n;
                    }
                    return total;
                }
            });
            Future<?> sent = threads.submit(() -> {
                try (SocketChannel out = SocketChannel.open(new InetSocketAddress("127.0.0.1", port))) {
                    out.socket().setTcpNoDelay(true);
                    ByteBuffer buf = ByteBuffer.allocateDirect(bufferSize);
                    long left = bytes;
                    while (left > 0) {
                        buf.clear().limit((int) Math.min(bufferSize, left));
                        while (buf.hasRemaining()) {
                            left -= out.write(buf);
                        }
                    }
                }
                return null;
            });
            sent.get();
            long got = received.get();
            if (got != bytes) {
                throw new IOException("the baseline moved " + got + " of " + bytes + " bytes");
            }
            return (System.nanoTime() - start) / 1e9;
        } catch (java.util.concurrent.ExecutionException e) {
            throw new IOException("the NIO baseline failed: " + e.getCause(), e.getCause());
        } finally {
            threads.shutdownNow();
            threads.awaitTermination(10, TimeUnit.SECONDS);
        }
    }

    /** socat's path, or null where it is not installed. */
    public static Path socat() {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(java.io.File.pathSeparator)) {
            Path p = Path.of(dir, "socat");
            if (Files.isExecutable(p)) {
                return p;
            }
        }
        return null;
    }

    /** The same bytes through socat (1 MiB buffers), receiver and sender as two processes; seconds. */
    public static double socat(Path socat, long bytes) throws IOException, InterruptedException {
        int port;
        try (ServerSocketChannel probe = ServerSocketChannel.open()) {
            probe.bind(new InetSocketAddress("127.0.0.1", 0));
            port = ((InetSocketAddress) probe.getLocalAddress()).getPort();
        }
        Process receiver = new ProcessBuilder(socat.toString(), "-u", "-b", "1048576",
                "TCP-LISTEN:" + port + ",bind=127.0.0.1,reuseaddr", "OPEN:/dev/null")
                .redirectErrorStream(true).start();
        Thread.sleep(200);
        long start = System.nanoTime();
        Process sender = new ProcessBuilder("sh", "-c", "head -c " + bytes + " /dev/zero | " + socat
                + " -u -b 1048576 - TCP:127.0.0.1:" + port).redirectErrorStream(true).start();
        if (sender.waitFor() != 0 || receiver.waitFor() != 0) {
            throw new IOException("socat failed: " + new String(sender.getInputStream().readAllBytes()));
        }
        return (System.nanoTime() - start) / 1e9;
    }
}
