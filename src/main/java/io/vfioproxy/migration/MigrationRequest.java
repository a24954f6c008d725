package io.vfioproxy.migration;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.stream.StreamEndpoint;
import io.vfioproxy.util.Enums;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * A request to migrate one or more devices of this agent, as one migration, to a destination agent.
 *
 * @param devices the source devices and the destination devices that receive their state
 * @param destination the destination agent's stream endpoint
 * @param mode PRECOPY moves most of the state while the devices run (for devices that support it); STOP_COPY
 *        stops them for the whole transfer
 * @param manualSwitchover hold when ready to switch over, until {@link MigrationService#release} is called
 * @param downtimeLimitMillis pre-copy switches over when the rest is expected to take no longer (QEMU: 300 ms)
 * @param precopyBudgetMillis pre-copy switches over after this long even without converging
 * @param chunkSize the chunk size for this migration, or 0 for the agent's default
 * @param allowWithoutP2p migrate several devices as one even where one lacks VFIO_MIGRATION_P2P, which QEMU refuses:
 *        such a device cannot be quiesced while its peers still run, so peer-to-peer DMA may reach it stopped
 */
public record MigrationRequest(List<DevicePair> devices, StreamEndpoint destination, Mode mode,
        boolean manualSwitchover, long downtimeLimitMillis, long precopyBudgetMillis, int chunkSize,
        boolean allowWithoutP2p) {

    /** How the state moves. */
    public enum Mode {
        PRECOPY("precopy"),
        STOP_COPY("stop-copy");

        private final String wireName;

        Mode(String wireName) {
            this.wireName = wireName;
        }

        /** The name in requests, HELLOs and statuses: "precopy" or "stop-copy". */
        public String wireName() {
            return wireName;
        }

        /** The mode named {@code name} ("precopy" or "stop-copy"). */
        public static Mode parse(String name) {
            Mode m = Enums.find(values(), mode -> mode.wireName.equals(name));
            if (m == null) {
                throw new IllegalArgumentException("unknown mode '" + name + "': expected 'precopy' or 'stop-copy'");
            }
            return m;
        }
    }

    /**
     * @param device the source device on this agent
     * @param targetDevice the device on the destination
     */
    public record DevicePair(String device, String targetDevice) {
    }

    public static final long DEFAULT_DOWNTIME_LIMIT_MILLIS = 300;
    public static final long DEFAULT_PRECOPY_BUDGET_MILLIS = 30_000;

    public MigrationRequest {
        devices = List.copyOf(devices);
    }

    /** One device, stop-copy, the agent's chunk size unless {@code chunkSize} is set. */
    public MigrationRequest(String device, StreamEndpoint destination, String targetDevice, int chunkSize) {
        this(List.of(new DevicePair(device, targetDevice)), destination, Mode.STOP_COPY, false,
                DEFAULT_DOWNTIME_LIMIT_MILLIS, DEFAULT_PRECOPY_BUDGET_MILLIS, chunkSize, false);
    }

    public MigrationRequest withMode(Mode m) {
        return new MigrationRequest(devices, destination, m, manualSwitchover, downtimeLimitMillis,
                precopyBudgetMillis, chunkSize, allowWithoutP2p);
    }

    public MigrationRequest withSwitchover(boolean manual, long downtimeLimit, long precopyBudget) {
        return new MigrationRequest(devices, destination, mode, manual, downtimeLimit, precopyBudget, chunkSize,
                allowWithoutP2p);
    }

    /**
     * Reads {@code {"device": "gpu0", "targetDevice": "gpu0"}} or {@code {"devices": [{"device": ...,
     * "targetDevice": ...}, ...]}}, with {@code "destination": "host:7070"} and optionally {@code "mode":
     * "precopy" | "stop-copy"} (default precopy), {@code "switchover": "auto" | "manual"},
     * {@code "downtimeLimitMillis"}, {@code "precopyBudgetMillis"}, {@code "chunkSize"}.
     *
     * <p>The fields' types and ranges are the API's to check (the MigrationRequest schema of its OpenAPI document);
     * this checks what a schema cannot say.
     *
     * @throws IllegalArgumentException naming the missing or malformed field
     */
    public static MigrationRequest fromJson(JsonObject json) {
        List<DevicePair> pairs = new ArrayList<>();
        JsonArray list = json.getJsonArray("devices");
        if (list != null) {
            for (int i = 0; i < list.size(); i++) {
                pairs.add(pair(list.getJsonObject(i)));
            }
        } else {
            pairs.add(pair(json));
        }
        Set<String> seen = new HashSet<>();
        Set<String> targets = new HashSet<>();
        for (DevicePair p : pairs) {
            if (!seen.add(p.device()) || !targets.add(p.targetDevice())) {
                throw new IllegalArgumentException("device " + p.device() + " or target " + p.targetDevice()
                        + " is named twice");
            }
        }
        String destination = json.getString("destination");
        if (destination == null || destination.isBlank()) {
            throw new IllegalArgumentException("'destination' is required: the destination agent as host:port");
        }
        return new MigrationRequest(pairs, StreamEndpoint.parse(destination),
                Mode.parse(json.getString("mode", Mode.PRECOPY.wireName())),
                "manual".equals(json.getString("switchover")),
                json.getLong("downtimeLimitMillis", DEFAULT_DOWNTIME_LIMIT_MILLIS),
                json.getLong("precopyBudgetMillis", DEFAULT_PRECOPY_BUDGET_MILLIS),
                json.getInteger("chunkSize", 0), json.getBoolean("allowDevicesWithoutP2p", false));
    }

    private static DevicePair pair(JsonObject json) {
        String device = json.getString("device");
        if (device == null || device.isBlank()) {
            throw new IllegalArgumentException("'device' is required: the source device on this agent");
        }
        String target = json.getString("targetDevice");
        return new DevicePair(device, target == null ? device : target);
    }

    public JsonObject toJson() {
        JsonArray list = new JsonArray();
        devices.forEach(p -> list.add(new JsonObject().put("device", p.device()).put("targetDevice",
                p.targetDevice())));
        return new JsonObject().put("devices", list).put("destination", destination.toString())
                .put("mode", mode.wireName())
                .put("switchover", manualSwitchover ? "manual" : "auto")
                .put("downtimeLimitMillis", downtimeLimitMillis).put("precopyBudgetMillis", precopyBudgetMillis)
                .put("chunkSize", chunkSize).put("allowDevicesWithoutP2p", allowWithoutP2p);
    }
}
