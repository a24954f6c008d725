package io.vfioproxy.testing;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.util.ResourceLeakDetector;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Fails a test when a pooled Netty buffer it used was garbage-collected without being released: the failure
 * paths (a cut connection, an ABORT, a closed device) are where a forgotten release hides. Needs every buffer
 * tracked from the start ({@code -Dio.netty.leakDetection.level=paranoid}, which the failsafe configuration sets;
 * raising the level at run time misses buffers). After the test's own clean-up it collects garbage and allocates,
 * so the detector reports what it found.
 */
public final class NoBufferLeaks implements BeforeEachCallback, AfterEachCallback {

    private final Logger detectorLog = Logger.getLogger(ResourceLeakDetector.class.getName());
    private final List<String> leaks = new CopyOnWriteArrayList<>();
    private final Handler recorder = new Handler() {
        @Override
        public void publish(LogRecord record) {
            if (record.getMessage() != null && record.getMessage().startsWith("LEAK:")) {
                leaks.add(record.getMessage());
            }
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };

    @Override
    public void beforeEach(ExtensionContext context) {
        assertThat(ResourceLeakDetector.getLevel()).as("leak detection level: run with "
                + "-Dio.netty.leakDetection.level=paranoid, as mvn verify does").isEqualTo(ResourceLeakDetector.Level.PARANOID);
        detectorLog.addHandler(recorder);
        detectorLog.setLevel(Level.ALL);
    }

    @Override
    public void afterEach(ExtensionContext context) throws InterruptedException {
        try {
            for (int i = 0; i < 2 && leaks.isEmpty(); i++) {
                System.gc();
                Thread.sleep(100);
                // The detector reports collected, unreleased buffers when it tracks a new one.
                ByteBufAllocator.DEFAULT.directBuffer(16).release();
                PooledByteBufAllocator.DEFAULT.directBuffer(16).release();
            }
            assertThat(leaks).as("pooled buffers never released in " + context.getDisplayName()).isEmpty();
        } finally {
            detectorLog.removeHandler(recorder);
        }
    }
}
