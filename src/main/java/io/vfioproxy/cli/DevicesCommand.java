package io.vfioproxy.cli;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceKind;
import io.vfioproxy.device.DevicePolicy;
import io.vfioproxy.device.linux.Discovery;
import io.vfioproxy.device.linux.VfioDeviceInfo;
import io.vfioproxy.util.ByteSize;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Lists the VFIO devices of this node, whether they can migrate, and what a destination agent does with each. */
@Command(name = "devices", mixinStandardHelpOptions = true,
        description = "List this node's VFIO devices (PCI functions bound to a VFIO driver, and mdevs) with their "
                + "identity, migration flags and MIG_DATA_SIZE. Probing opens each device briefly: a device in use "
                + "shows EBUSY and is left alone, but vfio-pci resets a PCI function that nobody has open.")
public final class DevicesCommand implements Callable<Integer> {

    @Option(names = "--json", description = "print JSON")
    boolean json;

    @Override
    public Integer call() throws Exception {
        Discovery discovery = new Discovery();
        List<VfioDeviceInfo> devices = discovery.list();
        List<Discovery.MigrationProbe> probes = new ArrayList<>();
        for (VfioDeviceInfo d : devices) {
            probes.add(discovery.probeMigration(d));
        }
        if (json) {
            JsonArray out = new JsonArray();
            for (int i = 0; i < devices.size(); i++) {
                Discovery.MigrationProbe p = probes.get(i);
                JsonObject device = devices.get(i).toJson().put("migration", p.migration())
                        .mergeIn(DevicePolicy.of(devices.get(i).kind(), new JsonObject()).toJson());
                if (p.migratable()) {
                    device.put("migrationDataSize", p.dataSize() < 0 ? null : p.dataSize());
                    if (p.dataSizeError() != null) {
                        device.put("migrationDataSizeError", p.dataSizeError());
                    }
                }
                out.add(device);
            }
            System.out.println(new JsonObject().put("devices", out).encodePrettily());
            return 0;
        }
        String format = "%-38s %-5s %-10s %-16s %-6s %-8s %-24s %s%n";
        System.out.printf(format, "NAME", "KIND", "ID", "DRIVER", "GROUP", "CDEV", "MIGRATION", "MIG_DATA_SIZE");
        for (int i = 0; i < devices.size(); i++) {
            VfioDeviceInfo d = devices.get(i);
            Discovery.MigrationProbe p = probes.get(i);
            String id = d.bus().equals("mdev") ? d.mdevType() : d.vendor() + ":" + d.device();
            String size = !p.migratable() ? "-" : p.dataSize() >= 0 ? ByteSize.format(p.dataSize())
                    : "unknown (" + p.dataSizeError() + ")";
            System.out.printf(format, d.name(), d.kind().wireName(), id, d.driver(),
                    d.iommuGroup() < 0 ? "-" : d.iommuGroup(), d.cdev().isEmpty() ? "-" : d.cdev(), p.migration(), size);
        }
        if (devices.isEmpty()) {
            System.out.println("(no VFIO devices on this node)");
            return 0;
        }
        System.out.println();
        for (DeviceKind kind : DeviceKind.values()) {
            if (devices.stream().anyMatch(d -> d.kind() == kind)) {
                System.out.println(kind.wireName() + ": as a destination, the agent "
                        + DevicePolicy.of(kind, new JsonObject()).describe() + " (\"afterMigration\" and "
                        + "\"handback\" in its device entry change this)");
            }
        }
        return 0;
    }
}
