package io.vfioproxy.migration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.vertx.core.Context;
import io.vertx.core.Vertx;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.device.DeviceVerticle;
import io.vfioproxy.stream.DataFrame;
import io.vfioproxy.uapi.DeviceState;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** A device's saving session as a read stream, on a real simulated device and its worker thread. */
class DeviceReadStreamTest {

    private Vertx vertx;
    private DeviceHandle device;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
        DeviceRegistry registry = new DeviceRegistry();
        vertx.deployVerticle(new DeviceVerticle("test", LoopbackAgent.simulated("sim0", 4 << 20, 1),
                (name, from, to, cause, nanos) -> { }, registry)).await();
        device = registry.find("sim0");
        device.setState(DeviceState.STOP_COPY, DeviceState.RUNNING, "test").await();
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    @Test
    void aHandlerThatThrowsReachesTheExceptionHandlerAndTheStreamStops() {
        List<Throwable> errors = new CopyOnWriteArrayList<>();
        AtomicInteger frames = new AtomicInteger();
        Context context = vertx.getOrCreateContext();
        context.runOnContext(v -> {
            DeviceReadStream stream = new DeviceReadStream(vertx, device, 0, 1 << 20, false, false);
            stream.exceptionHandler(errors::add);
            stream.handler(frame -> {
                frame.release();
                if (frames.incrementAndGet() == 2) {
                    throw new IllegalStateException("the consumer broke");
                }
            });
        });
        await("the failure reaches the exception handler").atMost(Duration.ofSeconds(10))
                .until(() -> !errors.isEmpty());
        assertThat(errors).hasSize(1);
        assertThat(errors.get(0)).hasMessage("the consumer broke");
        // Nothing is read after the failure: the stream has stopped, not spun on.
        assertThat(frames.get()).isEqualTo(2);
    }

    @Test
    void theStopCopyStreamEndsOnceAfterItsLastFrame() {
        List<String> seen = new CopyOnWriteArrayList<>();
        vertx.getOrCreateContext().runOnContext(v -> {
            DeviceReadStream stream = new DeviceReadStream(vertx, device, 0, 1 << 20, false, false);
            stream.endHandler(e -> seen.add("end"));
            stream.handler((DataFrame frame) -> {
                seen.add("frame " + frame.chunkLength());
                frame.release();
            });
        });
        await("the end").atMost(Duration.ofSeconds(10)).until(() -> seen.contains("end"));
        // 4 MiB of pages with their record headers, the stream's header and trailer: five reads of up to 1 MiB.
        assertThat(seen).hasSize(6).last().isEqualTo("end");
    }
}
