package io.vfioproxy.device.linux;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceIdentity;
import io.vfioproxy.device.DeviceKind;

/**
 * A VFIO device of this node as sysfs shows it.
 *
 * @param name the PCI address (0000:3b:00.1) or the mdev UUID
 * @param bus "pci" or "mdev"
 * @param vendor PCI vendor ID ("8086"), or the mdev parent's, or "" where sysfs has none
 * @param device PCI device ID, or ""
 * @param subsystemVendor PCI subsystem vendor ID, or ""
 * @param subsystemDevice PCI subsystem device ID, or ""
 * @param driver the bound driver: vfio-pci, a variant driver (mlx5_vfio_pci, ...) or the mdev's
 * @param mdevType the mdev type ("mtty-2"), or "" for PCI devices
 * @param iommuGroup the IOMMU group number, or -1
 * @param cdev the device cdev name ("vfio0") where the kernel has one, or ""
 */
public record VfioDeviceInfo(String name, String bus, String vendor, String device, String subsystemVendor,
        String subsystemDevice, String driver, String mdevType, int iommuGroup, String cdev) {

    /** A mediated device, or a PCI function. */
    public DeviceKind kind() {
        return bus.equals("mdev") ? DeviceKind.MDEV : DeviceKind.PCI_FUNCTION;
    }

    /** What a destination compares: the kind of device and its driver. */
    public DeviceIdentity identity(long stateSize) {
        String model = bus.equals("mdev") ? "mdev:" + mdevType
                : "pci:" + vendor + ":" + device + (subsystemVendor.isEmpty() ? ""
                        : " subsystem " + subsystemVendor + ":" + subsystemDevice);
        return new DeviceIdentity("native", model, driver, stateSize);
    }

    public JsonObject toJson() {
        return new JsonObject().put("name", name).put("bus", bus).put("vendor", vendor).put("device", device)
                .put("subsystemVendor", subsystemVendor).put("subsystemDevice", subsystemDevice)
                .put("driver", driver).put("mdevType", mdevType).put("iommuGroup", iommuGroup).put("cdev", cdev);
    }
}
