package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.uapi.DeviceState;

/**
 * Sends one device's section as QEMU's save handlers write it, to a connection or a checkpoint file:
 * DEV_SETUP_STATE END_OF_STATE; with pre-copy, the data read while the device runs (iterations each closed by
 * END_OF_STATE, or by DEV_INIT_DATA_SENT once the initial data is out when the peer takes a switchover ack); then,
 * after the switchover, the stop-copy data and END_OF_STATE; then DEV_CONFIG_STATE END_OF_STATE (the agent carries
 * no device config: QEMU puts the device's VMState there). Then the agent's own check of the section, SECTION_END
 * with the counts, outside the section.
 *
 * <p>The device's data goes through one pipe from its saving session to the connection, from the first
 * pre-copy read to the end of the stop-copy data: the session's fd stays the same across PRE_COPY,
 * PRE_COPY_P2P and STOP_COPY.
 */
final class SectionSender {

    private final Vertx vertx;
    private final DeviceAtStart start;
    private final DeviceHandle device;
    private final String target;
    private final FrameWriter writer;
    private final int channel;
    private final int chunkSize;
    private DeviceReadStream reader;
    private Future<Void> piped;

    SectionSender(Vertx vertx, DeviceAtStart start, String target, FrameWriter writer, int channel, int chunkSize) {
        this.vertx = vertx;
        this.start = start;
        this.device = start.device();
        this.target = target;
        this.writer = writer;
        this.channel = channel;
        // QEMU's buffer: min(1 MiB, stop_copy_length) as the device reports it now; 1 MiB where it cannot tell.
        long size = start.dataSize();
        this.chunkSize = size > 0 && size < chunkSize ? (int) size : chunkSize;
    }

    DeviceHandle device() {
        return device;
    }

    DeviceAtStart start() {
        return start;
    }

    int channel() {
        return channel;
    }

    /** The HELLO's entry for this device. */
    Hello.Device hello() {
        return hello(channel, start, target);
    }

    /** The HELLO's entry for the device {@code start} read, sent on {@code channel} to {@code target}. */
    static Hello.Device hello(int channel, DeviceAtStart start, String target) {
        return new Hello.Device(channel, start.device().name(), target, start.identity());
    }

    Future<Void> setup() {
        writer.marker(channel, VfioTag.DEV_SETUP_STATE);
        return writer.marker(channel, VfioTag.END_OF_STATE);
    }

    private void pipe(boolean precopy, boolean switchoverAck) {
        reader = new DeviceReadStream(vertx, device, channel, chunkSize, precopy, switchoverAck);
        piped = reader.pipe().endOnSuccess(false).endOnFailure(false).to(writer.dataSink());
    }

    /**
     * RUNNING -&gt; PRE_COPY (recover RUNNING), then the device's data flows while it runs.
     *
     * @param switchoverAck the destination acknowledges the initial data: send DEV_INIT_DATA_SENT
     */
    Future<Void> startPrecopy(String cause, boolean switchoverAck) {
        return device.setState(DeviceState.PRE_COPY, DeviceState.RUNNING, cause)
                .onSuccess(v -> pipe(true, switchoverAck));
    }

    /** Stops pre-copy reads before the switchover; the data already read still goes out, in order. */
    Future<Void> hold() {
        return reader == null ? Future.succeededFuture() : reader.hold();
    }

    /**
     * First step of the switchover: RUNNING -&gt; RUNNING_P2P or PRE_COPY -&gt; PRE_COPY_P2P, so the device stops
     * initiating peer-to-peer DMA while its peers still run. Nothing to do without P2P, or for a stopped device.
     */
    Future<Void> quiesce(String cause) {
        if (!device.flags().p2p() || start.state() != DeviceState.RUNNING) {
            return Future.succeededFuture();
        }
        DeviceState to = reader != null ? DeviceState.PRE_COPY_P2P : DeviceState.RUNNING_P2P;
        return device.setState(to, DeviceState.RUNNING, cause);
    }

    /**
     * Second step: to STOP_COPY (recover the state the device started in), then the rest of the stream. A pre-copy
     * session goes on, on the same fd; otherwise STOP -&gt; STOP_COPY opens the session now. Completes when read()
     * returned 0.
     */
    Future<Void> stopCopy(String cause) {
        return device.setState(DeviceState.STOP_COPY, start.state(), cause).compose(v -> {
            if (reader == null) {
                pipe(false, false);
            } else {
                reader.stopCopy();
            }
            return piped;
        });
    }

    /** Ends the section, then sends the agent's check of it. */
    Future<Void> end() {
        writer.marker(channel, VfioTag.END_OF_STATE);
        writer.config(channel, new byte[0]);
        writer.marker(channel, VfioTag.END_OF_STATE);
        return writer.control(FrameType.SECTION_END, channel, new JsonObject().put("device", device.name())
                .put("dataBytes", reader.bytesRead()).put("dataChunks", reader.chunks()));
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
     * What the stop-copy phase is expected to send: MIG_DATA_SIZE as last asked (never less than the pre-copy data
     * still pending, counted down as it is read), or as the migration found it before any read.
     */
    long remainingEstimate() {
        return reader == null ? start.expectedSize() : reader.remainingEstimate(start.expectedSize());
    }
}
