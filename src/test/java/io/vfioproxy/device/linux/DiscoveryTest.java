package io.vfioproxy.device.linux;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Discovery over a sysfs tree laid out as the kernel lays it out (files and symlinks in a temp dir). */
class DiscoveryTest {

    @TempDir
    Path root;

    private Discovery discovery;

    private void file(Path p, String content) throws Exception {
        Files.createDirectories(p.getParent());
        Files.writeString(p, content + "\n");
    }

    private void link(Path p, String target) throws Exception {
        Files.createDirectories(p.getParent());
        Files.createSymbolicLink(p, Path.of(target));
    }

    private void pci(String addr, String vendor, String device, String driver, int group, String cdev) throws Exception {
        Path d = root.resolve("sys/devices/pci0000:00").resolve(addr);
        file(d.resolve("vendor"), "0x" + vendor);
        file(d.resolve("device"), "0x" + device);
        file(d.resolve("subsystem_vendor"), "0x15b3");
        file(d.resolve("subsystem_device"), "0x0020");
        link(d.resolve("driver"), "../../../bus/pci/drivers/" + driver);
        link(d.resolve("iommu_group"), "../../../kernel/iommu_groups/" + group);
        if (cdev != null) {
            Files.createDirectories(d.resolve("vfio-dev").resolve(cdev));
        }
        link(root.resolve("sys/bus/pci/devices").resolve(addr), "../../../devices/pci0000:00/" + addr);
    }

    @BeforeEach
    void tree() throws Exception {
        pci("0000:3b:00.1", "15b3", "101e", "mlx5_vfio_pci", 17, "vfio3");
        pci("0000:00:1f.0", "8086", "a304", "lpc_ich", 5, null);
        pci("0000:5e:00.0", "10de", "2330", "vfio-pci", 40, null);
        String uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1000";
        Path parent = root.resolve("sys/devices/virtual/mtty/mtty");
        Path m = parent.resolve(uuid);
        link(m.resolve("mdev_type"), "../mdev_supported_types/mtty-2");
        link(m.resolve("driver"), "../../../../bus/mdev/drivers/vfio_mdev");
        link(m.resolve("iommu_group"), "../../../../kernel/iommu_groups/0");
        Files.createDirectories(m.resolve("vfio-dev/vfio0"));
        link(root.resolve("sys/bus/mdev/devices").resolve(uuid), "../../../devices/virtual/mtty/mtty/" + uuid);
        discovery = new Discovery(root.resolve("sys"), root.resolve("dev"));
    }

    @Test
    void listsPciDevicesBoundToVfioDriversAndMdevs() throws Exception {
        assertThat(discovery.list()).extracting(VfioDeviceInfo::name)
                .containsExactly("0000:3b:00.1", "0000:5e:00.0", "83b8f4f2-509f-382f-3c1e-e6bfe0fa1000");
        VfioDeviceInfo nic = discovery.list().get(0);
        assertThat(nic).isEqualTo(new VfioDeviceInfo("0000:3b:00.1", "pci", "15b3", "101e", "15b3", "0020",
                "mlx5_vfio_pci", "", 17, "vfio3"));
        assertThat(nic.identity(96).model()).isEqualTo("pci:15b3:101e subsystem 15b3:0020");
        VfioDeviceInfo mtty = discovery.list().get(2);
        assertThat(mtty.bus()).isEqualTo("mdev");
        assertThat(mtty.mdevType()).isEqualTo("mtty-2");
        assertThat(mtty.iommuGroup()).isZero();
        assertThat(mtty.identity(96).model()).isEqualTo("mdev:mtty-2");
    }

    @Test
    void resolvesEveryFormOfName() throws Exception {
        assertThat(discovery.resolve("0000:3B:00.1").cdev()).isEqualTo("vfio3");
        assertThat(discovery.resolve("/dev/vfio/devices/vfio3").name()).isEqualTo("0000:3b:00.1");
        assertThat(discovery.resolve("83b8f4f2-509f-382f-3c1e-e6bfe0fa1000").cdev()).isEqualTo("vfio0");
        assertThatThrownBy(() -> discovery.resolve("0000:00:1f.0"))
                .hasMessage("no VFIO device with the PCI address 0000:00:1f.0 on this node (is it bound to a VFIO driver?)");
        assertThatThrownBy(() -> discovery.resolve("gpu")).hasMessageStartingWith("'gpu' is not a device name");
    }

    @Test
    void opensThroughTheGroupWhenNoCdevNodeExists() throws Exception {
        // No /dev/vfio/devices/vfio3 under this root: the group path is taken, and fails on the missing container.
        assertThatThrownBy(() -> discovery.open("nic0", discovery.resolve("0000:3b:00.1")))
                .hasMessageStartingWith("nic0: open /dev/vfio/vfio failed");
    }
}
