package io.vfioproxy.migration;

import io.netty.buffer.ByteBufAllocator;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.uapi.DeviceState;
import java.nio.charset.StandardCharsets;

/**
 * Sends one device's section as QEMU's save handlers write it, to a connection or a checkpoint file:
 * DEV_SETUP_STATE END_OF_STATE; with pre-copy, the data read while the device runs (iterations ending in
 * END_OF_STATE, DEV_INIT_DATA_SENT once the initial data is out); then, after the switchover, the stop-copy
 * data; then END_OF_STATE DEV_CONFIG_STATE END_OF_STATE.
 *
 * <p>The device's data goes through one pipe from its saving session to the connection, from the first
 * pre-copy read to the end of the stop-copy data: the session's fd stays the same across PRE_COPY,
 * PRE_COPY_P2P and STOP_COPY.
 */
final class SectionSender {

    /** Pause before reading again after pre-copy data ran dry. */
    static final long PRECOPY_POLL_MILLIS = 5;

    private final Vertx vertx;
    private final DeviceHandle device;
    private final String target;
    private final FrameWriter writer;
    private final int channel;
    private final int chunkSize;
    private DeviceReadStream reader;
    private Future<Void> piped;

    SectionSender(Vertx vertx, DeviceHandle device, String target, FrameWriter writer, int channel, int chunkSize) {
        this.vertx = vertx;
        this.device = device;
        this.target = target;
        this.writer = writer;
        this.channel = channel;
        // QEMU's buffer: min(1 MiB, stop_copy_length); no bigger than the device's whole stream.
        long size = device.identity().stateSize();
        this.chunkSize = size > 0 && size < chunkSize ? (int) size : chunkSize;
    }

    DeviceHandle device() {
        return device;
    }

    int channel() {
        return channel;
    }

    /** The HELLO's entry for this device. */
    Hello.Device hello() {
        return new Hello.Device(channel, device.name(), target, device.identity());
    }

    Future<Void> setup() {
        writer.marker(channel, VfioTag.DEV_SETUP_STATE);
        return writer.marker(channel, VfioTag.END_OF_STATE);
    }

    private void pipe(boolean precopy) {
        reader = new DeviceReadStream(vertx, device, channel, chunkSize, ByteBufAllocator.DEFAULT, precopy,
                PRECOPY_POLL_MILLIS);
        piped = reader.pipe().endOnSuccess(false).endOnFailure(false).to(writer.dataSink());
    }

    /** RUNNING -&gt; PRE_COPY (recover RUNNING), then the device's data flows while it runs. */
    Future<Void> startPrecopy(String cause) {
        return device.setState(DeviceState.PRE_COPY, DeviceState.RUNNING, cause).onSuccess(v -> pipe(true));
    }

    /** Stops pre-copy reads before the switchover; the data already read still goes out, in order. */
    Future<Void> hold() {
        return reader == null ? Future.succeededFuture() : reader.hold();
    }

    /**
     * First step of the switchover: RUNNING -&gt; RUNNING_P2P or PRE_COPY -&gt; PRE_COPY_P2P, so the device stops
     * initiating peer-to-peer DMA while its peers still run. Nothing to do without P2P.
     */
    Future<Void> quiesce(String cause) {
        if (!device.flags().p2p()) {
            return Future.succeededFuture();
        }
        DeviceState to = reader != null ? DeviceState.PRE_COPY_P2P : DeviceState.RUNNING_P2P;
        return device.setState(to, DeviceState.RUNNING, cause);
    }

    /**
     * Second step: to STOP_COPY (recover RUNNING), then the rest of the stream. A pre-copy session goes on, on
     * the same fd; otherwise STOP -&gt; STOP_COPY opens the session now. Completes when read() returned 0.
     */
    Future<Void> stopCopy(String cause) {
        return device.setState(DeviceState.STOP_COPY, DeviceState.RUNNING, cause).compose(v -> {
            if (reader == null) {
                pipe(false);
            } else {
                reader.stopCopy();
            }
            return piped;
        });
    }

    /** Ends the section; the configuration blob carries the counts the receiver checks. */
    Future<Void> end() {
        writer.marker(channel, VfioTag.END_OF_STATE);
        JsonObject config = new JsonObject().put("device", device.name()).put("dataBytes", reader.bytesRead())
                .put("dataChunks", reader.chunks());
        writer.config(channel, config.encode().getBytes(StandardCharsets.UTF_8));
        return writer.marker(channel, VfioTag.END_OF_STATE);
    }

    /** Stops reading and releases what was read but not sent. */
    void close() {
        if (reader != null) {
            reader.close();
        }
    }

    long bytesRead() {
        return reader == null ? 0 : reader.bytesRead();
    }

    long precopyBytes() {
        return reader == null ? 0 : reader.precopyBytes();
    }

    long stopCopyBytes() {
        return reader == null ? 0 : reader.stopCopyBytes();
    }

    long iterations() {
        return reader == null ? 0 : reader.iterations();
    }

    boolean initialDataSent() {
        return reader != null && reader.initialDataSent();
    }

    /**
     * What the stop-copy phase is expected to send: MIG_DATA_SIZE as last read in pre-copy (never less than the
     * pre-copy data still pending), or the device's size before any read.
     */
    long remainingEstimate() {
        if (reader == null || reader.lastInfo() == null) {
            return device.identity().stateSize();
        }
        long pending = reader.lastInfo().initialBytes() + reader.lastInfo().dirtyBytes();
        return Math.max(reader.lastStopCopySize(), pending);
    }
}
