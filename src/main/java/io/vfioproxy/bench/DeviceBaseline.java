package io.vfioproxy.bench;

import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.uapi.DeviceState;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * The agents' work without the agents: a simulated source device's stop-copy stream moved to a simulated
 * destination device over one loopback TCP connection by two plain threads, one reading the device into a direct
 * buffer and writing the socket, one reading the socket and writing the device. The devices are made as the bench's
 * agents make theirs (same size, page size and seeds), so both do the same device work: the difference is the
 * agent's own cost (framing, checksums, the event loops and the hand-offs to each device's thread).
 */
public final class DeviceBaseline {

    private DeviceBaseline() {
    }

    /**
     * Moves one stop-copy stream of {@code stateBytes} of state from a fresh source device to a fresh destination
     * device, which checks and loads it.
     *
     * @return the seconds from the first byte read to the destination's RESUMING -&gt; STOP
     * @throws IOException when the destination refused the stream or the socket failed
     */
    public static double migrate(long stateBytes, int bufferSize) throws IOException, InterruptedException {
        SimulatedDevice source = SimulatedDevice.builder("baseline-source", stateBytes).pageSize(LoopbackAgent.PAGE)
                .seed(0).build();
        SimulatedDevice destination = SimulatedDevice.builder("baseline-destination", stateBytes)
                .pageSize(LoopbackAgent.PAGE).seed(1000).build();
        ExecutorService threads = Executors.newFixedThreadPool(2);
        try (source; destination; ServerSocketChannel server = ServerSocketChannel.open()) {
            server.bind(new InetSocketAddress("127.0.0.1", 0));
            DataChannel out = source.setState(DeviceState.STOP_COPY).orElseThrow();
            DataChannel in = destination.setState(DeviceState.RESUMING).orElseThrow();
            long start = System.nanoTime();
            Future<?> receiving = threads.submit(() -> {
                try (SocketChannel socket = server.accept()) {
                    ByteBuffer buf = ByteBuffer.allocateDirect(bufferSize);
                    while (socket.read(buf.clear()) >= 0) {
                        in.write(buf.flip());
                    }
                    destination.setState(DeviceState.STOP);
                }
                return null;
            });
            Future<?> sending = threads.submit(() -> {
                try (SocketChannel socket = SocketChannel.open(server.getLocalAddress())) {
                    socket.socket().setTcpNoDelay(true);
                    ByteBuffer buf = ByteBuffer.allocateDirect(bufferSize);
                    while (out.read(buf.clear()) > 0) {
                        buf.flip();
                        while (buf.hasRemaining()) {
                            socket.write(buf);
                        }
                    }
                }
                return null;
            });
            sending.get();
            receiving.get();
            double seconds = (System.nanoTime() - start) / 1e9;
            if (destination.stateDigest() != source.stateDigest()) {
                throw new IOException("the device-to-device baseline loaded a state that differs from the source's");
            }
            return seconds;
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            throw new IOException("the device-to-device baseline failed: " + cause, cause);
        } catch (VfioException e) {
            throw new IOException("the device-to-device baseline failed: " + e.getMessage(), e);
        } finally {
            threads.shutdownNow();
            threads.awaitTermination(10, TimeUnit.SECONDS);
        }
    }
}
