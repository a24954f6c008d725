package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.streams.WriteStream;
import io.vfioproxy.stream.FrameDecoder;
import java.util.function.Consumer;

/**
 * The end of a pipe from a connection or a file: decodes what arrives, and reports full while the devices lag
 * behind, so the pipe pauses its source. After {@link #stop()} it reads and drops, so a peer still sending can
 * be drained.
 */
final class DecodingSink implements WriteStream<Buffer> {

    private final FrameDecoder decoder;
    private final SectionLoaderRef loader;
    private final Consumer<RuntimeException> onError;
    private boolean stopped;

    /** The loader whose queue makes the sink full; it may not exist yet when the pipe starts. */
    interface SectionLoaderRef {
        SectionLoader get();
    }

    DecodingSink(FrameDecoder decoder, SectionLoaderRef loader, Consumer<RuntimeException> onError) {
        this.decoder = decoder;
        this.loader = loader;
        this.onError = onError;
    }

    /** From now on, drop what arrives. */
    void stop() {
        stopped = true;
    }

    @Override
    public Future<Void> write(Buffer data) {
        if (!stopped) {
            try {
                decoder.feed(data);
            } catch (RuntimeException e) {
                onError.accept(e);
            }
        }
        return Future.succeededFuture();
    }

    @Override
    public boolean writeQueueFull() {
        SectionLoader l = loader.get();
        return !stopped && l != null && l.full();
    }

    @Override
    public WriteStream<Buffer> drainHandler(Handler<Void> handler) {
        SectionLoader l = loader.get();
        if (l != null) {
            l.drainHandler(handler);
        }
        return this;
    }

    @Override
    public WriteStream<Buffer> exceptionHandler(Handler<Throwable> handler) {
        return this;
    }

    @Override
    public Future<Void> end() {
        return Future.succeededFuture();
    }

    @Override
    public WriteStream<Buffer> setWriteQueueMaxSize(int maxSize) {
        return this;
    }

}
