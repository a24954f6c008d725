package io.vfioproxy.cli;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.linux.Discovery;
import io.vfioproxy.device.linux.VfioDeviceInfo;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** Lists the VFIO devices of this node and whether they can migrate. */
@Command(name = "devices", mixinStandardHelpOptions = true,
        description = "List this node's VFIO devices (PCI devices bound to a VFIO driver, and mdevs) with their "
                + "identity and migration flags. Probing opens each device briefly; a device in use shows EBUSY.")
public final class DevicesCommand implements Callable<Integer> {

    @Option(names = "--json", description = "print JSON")
    boolean json;

    @Override
    public Integer call() throws Exception {
        Discovery discovery = new Discovery();
        List<VfioDeviceInfo> devices = discovery.list();
        List<String> migration = new ArrayList<>();
        for (VfioDeviceInfo d : devices) {
            migration.add(discovery.probeMigration(d));
        }
        if (json) {
            JsonArray out = new JsonArray();
            for (int i = 0; i < devices.size(); i++) {
                out.add(devices.get(i).toJson().put("migration", migration.get(i)));
            }
            System.out.println(new JsonObject().put("devices", out).encodePrettily());
            return 0;
        }
        String format = "%-38s %-5s %-10s %-16s %-6s %-8s %s%n";
        System.out.printf(format, "NAME", "BUS", "ID", "DRIVER", "GROUP", "CDEV", "MIGRATION");
        for (int i = 0; i < devices.size(); i++) {
            VfioDeviceInfo d = devices.get(i);
            String id = d.bus().equals("mdev") ? d.mdevType() : d.vendor() + ":" + d.device();
            System.out.printf(format, d.name(), d.bus(), id, d.driver(), d.iommuGroup() < 0 ? "-" : d.iommuGroup(),
                    d.cdev().isEmpty() ? "-" : d.cdev(), migration.get(i));
        }
        if (devices.isEmpty()) {
            System.out.println("(no VFIO devices on this node)");
        }
        return 0;
    }
}
