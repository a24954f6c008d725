package io.vfioproxy.migration;

import io.netty.buffer.ByteBufAllocator;
import io.vertx.core.Future;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.uapi.DeviceState;
import java.nio.charset.StandardCharsets;

/**
 * Sends one device's section as QEMU's save handlers write it, to a connection or a checkpoint file:
 * DEV_SETUP_STATE END_OF_STATE, then STOP_COPY and the data piped from the device, then END_OF_STATE
 * DEV_CONFIG_STATE END_OF_STATE.
 */
final class SectionSender {

    private final DeviceHandle device;
    private final FrameWriter writer;
    private final int channel;
    private final int chunkSize;
    private DeviceReadStream reader;

    SectionSender(DeviceHandle device, FrameWriter writer, int channel, int chunkSize) {
        this.device = device;
        this.writer = writer;
        this.channel = channel;
        this.chunkSize = chunkSize;
    }

    /** The HELLO's entry for this device. */
    static JsonObject helloEntry(DeviceHandle device, int channel, String targetDevice) {
        return new JsonObject()
                .put("channel", channel)
                .put("sourceDevice", device.name())
                .put("targetDevice", targetDevice)
                .put("flags", device.flags().toString())
                .put("identity", device.identity().toJson());
    }

    Future<Void> setup() {
        writer.marker(channel, VfioTag.DEV_SETUP_STATE);
        return writer.marker(channel, VfioTag.END_OF_STATE);
    }

    /** Stops the device into STOP_COPY (recover state RUNNING) and pipes its data until read() returns 0. */
    Future<Void> stopCopy(String cause) {
        return device.setState(DeviceState.STOP_COPY, DeviceState.RUNNING, cause).compose(v -> {
            reader = new DeviceReadStream(device, channel, chunkSize, ByteBufAllocator.DEFAULT);
            return reader.pipe().endOnSuccess(false).endOnFailure(false).to(writer.dataSink());
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

    /** Device data bytes read so far. */
    long bytesRead() {
        return reader == null ? 0 : reader.bytesRead();
    }

    /** Stops reading and releases what was read but not sent. */
    void close() {
        if (reader != null) {
            reader.close();
        }
    }
}
