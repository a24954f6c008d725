package io.vfioproxy.migration;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The first frame of a migration stream, on a connection or in a checkpoint file: which migration, from which agent,
 * in which mode, and each device with its channel, its target and its identity. Built once by the sender
 * ({@link #toJson()}), checked once by the receiver ({@link #parse}).
 *
 * @param migration the migration's id
 * @param sourceAgent the sending agent's name
 * @param mode pre-copy or stop-copy
 * @param chunkSize the most device data one SECTION frame carries
 * @param checkpoint true in a checkpoint file
 * @param features what the sender offers beyond the base protocol ({@link #SWITCHOVER_ACK})
 * @param devices the devices, each on its own channel
 */
record Hello(String migration, String sourceAgent, Mode mode, int chunkSize, boolean checkpoint,
        Set<String> features, List<Device> devices) {

    /**
     * The source sends DEV_INIT_DATA_SENT once a device's initial pre-copy data is out, and waits for the
     * destination's SWITCHOVER_ACK before it switches over (QEMU's switchover-ack capability). Offered in HELLO,
     * accepted in ACCEPT; without it neither side uses the tag.
     */
    static final String SWITCHOVER_ACK = "switchover-ack";

    /**
     * Each device's section on a connection of its own: the destination's ACCEPT carries a {@code joinToken}, and
     * the source opens one more connection per channel from 1 on, whose first frame is JOIN with that token. The
     * migration's control, and channel 0, stay on the first connection. Offered for migrations of several devices.
     */
    static final String DEVICE_CONNECTIONS = "device-connections";

    /** The features this agent accepts when offered. */
    static final Set<String> KNOWN_FEATURES = Set.of(SWITCHOVER_ACK, DEVICE_CONNECTIONS);

    /** A migration id the receiver accepts: 1 to 128 characters. */
    static final int MAX_ID = 128;
    /** Channels are one byte of the frame header. */
    static final int MAX_CHANNEL = 255;

    /**
     * @param channel the frame channel its section travels on
     * @param sourceDevice the device's name on the source
     * @param targetDevice the device on the destination that loads the state
     * @param identity what the destination checks before it accepts
     */
    record Device(int channel, String sourceDevice, String targetDevice, DeviceIdentity identity) {
        JsonObject toJson() {
            return new JsonObject().put("channel", channel).put("sourceDevice", sourceDevice)
                    .put("targetDevice", targetDevice).put("flags", identity.flags()).put("identity", identity.toJson());
        }
    }

    /** The receiver cannot take this HELLO; the message is the reason it tells the sender. */
    static final class Invalid extends IllegalArgumentException {
        Invalid(String reason) {
            super(reason);
        }
    }

    Hello {
        features = Set.copyOf(features);
        devices = List.copyOf(devices);
    }

    /** The features a HELLO offers or an ACCEPT accepts; unknown names are kept, to be ignored. */
    static Set<String> features(JsonObject json) {
        Set<String> found = new HashSet<>();
        if (json.getValue("features") instanceof JsonArray list) {
            list.forEach(f -> found.add(String.valueOf(f)));
        }
        return found;
    }

    JsonObject toJson() {
        JsonObject json = new JsonObject()
                .put("protocol", Frames.PROTOCOL_VERSION)
                .put("migration", migration)
                .put("sourceAgent", sourceAgent)
                .put("mode", mode.wireName())
                .put("chunkSize", chunkSize)
                .put("features", new JsonArray(features.stream().sorted().toList()))
                .put("devices", new JsonArray(devices.stream().map(Device::toJson).toList()));
        if (checkpoint) {
            json.put("checkpoint", true);
        }
        return json;
    }

    /** The migration id a HELLO names, if it is a valid one, else null: a refused HELLO is still recorded. */
    static String migrationId(JsonObject json) {
        Object id = json.getValue("migration");
        return id instanceof String s && !s.isBlank() && s.length() <= MAX_ID ? s : null;
    }

    /**
     * Checks a received HELLO against this agent's protocol and limits.
     *
     * @throws Invalid with the reason to give the sender
     */
    static Hello parse(JsonObject json, Limits limits) {
        Object protocol = json.getValue("protocol");
        if (!(protocol instanceof Number n) || n.intValue() != Frames.PROTOCOL_VERSION) {
            throw new Invalid("unsupported protocol version " + protocol + "; this agent speaks "
                    + Frames.PROTOCOL_VERSION);
        }
        String id = migrationId(json);
        if (id == null) {
            throw new Invalid("the HELLO names no valid migration id");
        }
        Object chunk = json.getValue("chunkSize");
        if (!(chunk instanceof Number c) || c.longValue() <= 0 || c.longValue() > limits.maxChunk()) {
            throw new Invalid("chunk size " + chunk + " is outside 1.." + limits.maxChunk());
        }
        Mode mode;
        try {
            mode = Mode.parse(text(json, "mode", Mode.STOP_COPY.wireName()));
        } catch (IllegalArgumentException e) {
            throw new Invalid(e.getMessage());
        }
        Object list = json.getValue("devices");
        if (!(list instanceof JsonArray array) || array.isEmpty()) {
            throw new Invalid("the HELLO names no device");
        }
        List<Device> devices = new ArrayList<>();
        Set<Integer> channels = new HashSet<>();
        for (int i = 0; i < array.size(); i++) {
            if (!(array.getValue(i) instanceof JsonObject d)) {
                throw new Invalid("device entry " + i + " is not an object");
            }
            Object ch = d.getValue("channel");
            if (!(ch instanceof Integer channel) || channel < 0 || channel > MAX_CHANNEL || !channels.add(channel)) {
                throw new Invalid("device entry " + i + " has a missing, out-of-range or repeated channel");
            }
            String target = text(d, "targetDevice", null);
            if (target == null) {
                throw new Invalid("device entry " + i + " names no target device");
            }
            Object identity = d.getValue("identity");
            devices.add(new Device(channel, text(d, "sourceDevice", "?"), target,
                    DeviceIdentity.fromJson(identity instanceof JsonObject j ? j : new JsonObject())));
        }
        return new Hello(id, text(json, "sourceAgent", "?"), mode, ((Number) chunk).intValue(),
                Boolean.TRUE.equals(json.getValue("checkpoint")), features(json), devices);
    }

    private static String text(JsonObject json, String key, String fallback) {
        Object v = json.getValue(key);
        if (v == null) {
            return fallback;
        }
        if (!(v instanceof String s)) {
            throw new Invalid("'" + key + "' must be a string");
        }
        return s;
    }
}
