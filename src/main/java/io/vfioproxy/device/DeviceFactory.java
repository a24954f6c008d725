package io.vfioproxy.device;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.linux.Discovery;
import io.vfioproxy.device.linux.FdHandoff;
import io.vfioproxy.device.linux.VfioOpen;
import io.vfioproxy.device.sim.FaultPlan;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.uapi.MigrationFlags;
import io.vfioproxy.util.ByteSize;
import java.io.IOException;

/** Opens a device backend from its configuration entry (the "devices" array of conf/agent.json). */
public final class DeviceFactory {

    private DeviceFactory() {
    }

    /**
     * Opens the device {@code config} describes. Blocking: call it on the device's worker thread.
     *
     * <p>Simulated: {@code {"name": "sim0", "backend": "simulated", "size": "1GiB", "pageSize": 4096,
     * "flags": "STOP_COPY,P2P,PRE_COPY", "seed": 1, "dirtyRate": "64MiB", "faults": {...},
     * "drainedPrecopyRead": "ENOMSG", "dataRate": "500MB"}}; {@code dirtyRate} is bytes per second the workload writes
     * while running, {@code dataRate} how fast the device itself produces and absorbs its migration data (none by
     * default).
     *
     * <p>Native: {@code {"name": "gpu0", "backend": "native", "device": "0000:3b:00.1"}} (a PCI address, an
     * mdev UUID or a cdev path /dev/vfio/devices/vfioN), or {@code {"name": "vm1-gpu", "backend": "native",
     * "handoff": "/run/vmm/vm1-gpu.sock"}} to receive the device fd from the process that owns the device.
     */
    public static MigrationDevice open(JsonObject config) throws IOException {
        String name = config.getString("name");
        if (name == null || name.isBlank()) {
            throw new IllegalArgumentException("a device entry needs a name: " + config.encode());
        }
        String backend = config.getString("backend", "simulated");
        switch (backend) {
            case "simulated" -> {
                return simulated(name, config);
            }
            case "native" -> {
                return nativeDevice(name, config);
            }
            default -> throw new IllegalArgumentException("device " + name + ": unknown backend '" + backend
                    + "', expected 'simulated' or 'native'");
        }
    }

    private static MigrationDevice nativeDevice(String name, JsonObject config) throws IOException {
        Discovery discovery = new Discovery();
        String handoff = config.getString("handoff");
        if (handoff != null) {
            FdHandoff.Received fd = FdHandoff.receive(handoff);
            DeviceIdentity identity;
            try {
                identity = discovery.resolve(fd.label()).identity(0);
            } catch (IllegalArgumentException unknown) {
                identity = new DeviceIdentity("native", config.getString("model", "unknown"),
                        config.getString("driver", "unknown"), 0);
            }
            return VfioOpen.adopt(name, fd.fds(), fd.label(), identity);
        }
        String device = config.getString("device");
        if (device == null) {
            throw new IllegalArgumentException("device " + name + ": a native device needs 'device' (PCI address, "
                    + "mdev UUID or /dev/vfio/devices/vfioN) or 'handoff' (a unix socket that hands over its fd)");
        }
        return discovery.open(name, discovery.resolve(device));
    }

    private static MigrationDevice simulated(String name, JsonObject config) {
        long size = ByteSize.parse(config.getValue("size", "64MiB").toString());
        int pageSize = config.getInteger("pageSize", 4096);
        MigrationFlags flags = MigrationFlags.parse(config.getString("flags", "STOP_COPY,P2P,PRE_COPY"));
        long seed = config.getLong("seed", (long) name.hashCode());
        String drained = config.getString("drainedPrecopyRead", "ENOMSG");
        if (!drained.equals("ENOMSG") && !drained.equals("ZERO")) {
            throw new IllegalArgumentException("device " + name + ": drainedPrecopyRead must be ENOMSG or ZERO");
        }
        long dirtyRate = ByteSize.parse(config.getValue("dirtyRate", "0").toString());
        long dataRate = ByteSize.parse(config.getValue("dataRate", "0").toString());
        DeviceKind kind = DeviceKind.parse(config.getString("kind", DeviceKind.MDEV.wireName()));
        String stateFile = config.getString("stateFile");
        return SimulatedDevice.builder(name, size).pageSize(pageSize).flags(flags).seed(seed).kind(kind)
                .faults(FaultPlan.fromJson(config.getJsonObject("faults"))).zeroReadWhenDrained(drained.equals("ZERO"))
                .dirtyRate(dirtyRate).dataRate(dataRate).stateFile(stateFile == null || stateFile.isBlank() ? null
                        : java.nio.file.Path.of(stateFile)).build();
    }
}
