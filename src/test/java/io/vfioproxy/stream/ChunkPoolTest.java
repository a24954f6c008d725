package io.vfioproxy.stream;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.buffer.ByteBuf;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class ChunkPoolTest {

    @Test
    void aReleasedBufferIsTakenAgainInsteadOfANewOne() {
        try (ChunkPool pool = new ChunkPool(4096, 4)) {
            ByteBuf first = pool.take();
            first.writeLong(0x5EED_5EEDL);
            first.release();
            ByteBuf second = pool.take();
            // The same memory, as it was left: reused, not allocated and zeroed again.
            assertThat(second.getLong(0)).isEqualTo(0x5EED_5EEDL);
            assertThat(second.readerIndex()).isZero();
            assertThat(second.writerIndex()).isZero();
            assertThat(second.capacity()).isEqualTo(4096);
            assertThat(pool.allocated()).isEqualTo(1);
            second.release();
        }
    }

    @Test
    void aSliceKeepsTheBufferOutOfThePoolUntilItIsReleasedToo() {
        try (ChunkPool pool = new ChunkPool(4096, 4)) {
            ByteBuf buf = pool.take();
            buf.writeLong(0x5EED_5EEDL);
            ByteBuf slice = buf.retainedSlice(0, 16);
            buf.release();
            ByteBuf other = pool.take();
            other.setLong(0, 7);
            assertThat(slice.getLong(0)).isEqualTo(0x5EED_5EEDL);
            assertThat(pool.allocated()).isEqualTo(2);
            slice.release();
            other.release();
        }
    }

    @Test
    void moreThanMaxIdleReturnedBuffersAreFreed() {
        ChunkPool pool = new ChunkPool(4096, 2);
        List<ByteBuf> taken = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            taken.add(pool.take());
        }
        assertThat(pool.allocated()).isEqualTo(5);
        taken.forEach(ByteBuf::release);
        assertThat(pool.allocated()).isEqualTo(2);
        pool.close();
        assertThat(pool.allocated()).isZero();
    }

    @Test
    void buffersReturnedAfterTheCloseAreFreed() {
        ChunkPool pool = new ChunkPool(4096, 8);
        ByteBuf a = pool.take();
        ByteBuf b = pool.take();
        a.release();
        pool.close();
        assertThat(pool.allocated()).isEqualTo(1);
        b.release();
        assertThat(pool.allocated()).isZero();
    }

    @Test
    void takenOnOneThreadAndReleasedOnAnotherNothingIsLostOrKeptTwice() throws Exception {
        ChunkPool pool = new ChunkPool(1024, 4);
        ExecutorService releaser = Executors.newSingleThreadExecutor();
        CountDownLatch done = new CountDownLatch(10_000);
        try {
            for (int i = 0; i < 10_000; i++) {
                ByteBuf buf = pool.take();
                buf.writeInt(i);
                releaser.execute(() -> {
                    buf.release();
                    done.countDown();
                });
            }
            assertThat(done.await(60, TimeUnit.SECONDS)).isTrue();
            assertThat(pool.allocated()).isBetween(1, 4);
        } finally {
            releaser.shutdown();
            pool.close();
        }
        assertThat(pool.allocated()).isZero();
    }
}
