package io.vfioproxy.device.linux;

import io.vfioproxy.device.VfioException;
import io.vfioproxy.uapi.VfioUapi;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Finds the VFIO devices of a node in sysfs: PCI devices bound to vfio-pci or a variant driver, and mediated
 * devices. Resolves the names an operator gives (a cdev path, a PCI address or an mdev UUID) and opens a
 * device, through its cdev when the kernel has one, else through its group.
 */
public final class Discovery {

    private static final Pattern PCI_ADDRESS = Pattern.compile("[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]");
    private static final Pattern UUID = Pattern.compile(
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}");

    private final Path sys;
    private final Path dev;

    /** The real /sys and /dev. */
    public Discovery() {
        this(Path.of("/sys"), Path.of("/dev"));
    }

    /** Other roots, for a recorded sysfs tree. */
    public Discovery(Path sys, Path dev) {
        this.sys = sys;
        this.dev = dev;
    }

    /** Every VFIO device of the node, PCI devices first, each sorted by name. */
    public List<VfioDeviceInfo> list() throws IOException {
        List<VfioDeviceInfo> found = new ArrayList<>();
        for (Path d : children(sys.resolve("bus/pci/devices"))) {
            VfioDeviceInfo info = pci(d);
            if (info.driver().contains("vfio") || !info.cdev().isEmpty()) {
                found.add(info);
            }
        }
        for (Path d : children(sys.resolve("bus/mdev/devices"))) {
            found.add(mdev(d));
        }
        return found;
    }

    private static List<Path> children(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.sorted(Comparator.comparing(p -> p.getFileName().toString())).toList();
        }
    }

    private static String read(Path file) {
        try {
            return Files.readString(file).trim();
        } catch (IOException e) {
            return "";
        }
    }

    private static String hexId(Path file) {
        String v = read(file);
        return v.startsWith("0x") ? v.substring(2) : v;
    }

    private static String link(Path p) {
        try {
            return Files.readSymbolicLink(p).getFileName().toString();
        } catch (IOException | UnsupportedOperationException e) {
            return "";
        }
    }

    private static int group(Path d) {
        String g = link(d.resolve("iommu_group"));
        try {
            return g.isEmpty() ? -1 : Integer.parseInt(g);
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    private static String cdev(Path d) throws IOException {
        List<Path> c = children(d.resolve("vfio-dev"));
        return c.isEmpty() ? "" : c.get(0).getFileName().toString();
    }

    private VfioDeviceInfo pci(Path d) throws IOException {
        return new VfioDeviceInfo(d.getFileName().toString(), "pci", hexId(d.resolve("vendor")),
                hexId(d.resolve("device")), hexId(d.resolve("subsystem_vendor")), hexId(d.resolve("subsystem_device")),
                link(d.resolve("driver")), "", group(d), cdev(d));
    }

    private VfioDeviceInfo mdev(Path d) throws IOException {
        Path parent = d.toRealPath().getParent();
        return new VfioDeviceInfo(d.getFileName().toString(), "mdev", hexId(parent.resolve("vendor")),
                hexId(parent.resolve("device")), "", "", link(d.resolve("driver")), link(d.resolve("mdev_type")),
                group(d), cdev(d));
    }

    /**
     * The device an operator named.
     *
     * @throws IllegalArgumentException when no VFIO device has that name
     */
    public VfioDeviceInfo resolve(String name) throws IOException {
        String n = name.trim();
        String cdevName = n.startsWith("/dev/vfio/devices/") ? n.substring("/dev/vfio/devices/".length()) : null;
        for (VfioDeviceInfo info : list()) {
            if (cdevName != null ? cdevName.equals(info.cdev()) : info.name().equalsIgnoreCase(n)) {
                return info;
            }
        }
        String form = cdevName != null ? "cdev" : PCI_ADDRESS.matcher(n).matches() ? "PCI address"
                : UUID.matcher(n).matches() ? "mdev UUID" : null;
        throw new IllegalArgumentException(form == null
                ? "'" + name + "' is not a device name: give a cdev path (/dev/vfio/devices/vfioN), a PCI address "
                        + "(0000:3b:00.1) or an mdev UUID"
                : "no VFIO device with the " + form + " " + name + " on this node (is it bound to a VFIO driver?)");
    }

    /**
     * What a brief open tells of a device's migration.
     *
     * @param migration its flags ("STOP_COPY,P2P,PRE_COPY"), or why it cannot migrate or tell ("no: ENOTTY (not
     *        supported)", "no: EBUSY (in use)")
     * @param dataSize MIG_DATA_SIZE in bytes, or -1 where the device cannot tell
     * @param dataSizeError why not (the errno: kernels before 6.2 answer ENOTTY), or null
     */
    public record MigrationProbe(String migration, long dataSize, String dataSizeError) {
        /** Whether the device can migrate. */
        public boolean migratable() {
            return !migration.startsWith("no:");
        }
    }

    /**
     * Opens the device briefly and asks GET VFIO_DEVICE_FEATURE_MIGRATION and GET VFIO_DEVICE_FEATURE_MIG_DATA_SIZE.
     * Opening a PCI function nobody has open resets it (vfio-pci does so on first open and last close); a device in
     * use answers EBUSY and is left alone.
     */
    public MigrationProbe probeMigration(VfioDeviceInfo info) {
        try (NativeDevice device = open(info.name(), info)) {
            if (!device.probe(VfioUapi.VFIO_DEVICE_FEATURE_MIGRATION, VfioUapi.VFIO_DEVICE_FEATURE_GET)) {
                return new MigrationProbe("no: ENOTTY (not supported)", -1, null);
            }
            if (!device.probe(VfioUapi.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
                    VfioUapi.VFIO_DEVICE_FEATURE_GET | VfioUapi.VFIO_DEVICE_FEATURE_SET)) {
                return new MigrationProbe("no: the device cannot get and set its migration state", -1, null);
            }
            String flags = device.migrationFlags().toString();
            try {
                return new MigrationProbe(flags, device.stopCopySize(), null);
            } catch (VfioException e) {
                // QEMU falls back to its own estimate; so does the agent (DeviceAtStart).
                return new MigrationProbe(flags, -1, io.vfioproxy.uapi.Errno.nameOf(e.errno()));
            }
        } catch (VfioException e) {
            String why = e.is(io.vfioproxy.uapi.Errno.ENOTTY) ? "not supported"
                    : e.is(io.vfioproxy.uapi.Errno.EBUSY) ? "in use" : e.call();
            return new MigrationProbe("no: " + io.vfioproxy.uapi.Errno.nameOf(e.errno()) + " (" + why + ")", -1, null);
        }
    }

    /** Opens the device, through its cdev where there is one, else its group. */
    public NativeDevice open(String agentName, VfioDeviceInfo info) throws VfioException {
        if (!info.cdev().isEmpty() && Files.exists(dev.resolve("vfio/devices").resolve(info.cdev()))) {
            return VfioOpen.cdev(agentName, dev.resolve("vfio/devices").resolve(info.cdev()).toString(), info.name(),
                    info.identity(0));
        }
        if (info.iommuGroup() < 0) {
            throw new VfioException(agentName, "open", null, io.vfioproxy.uapi.Errno.ENODEV,
                    info.name() + " has neither a VFIO cdev nor an IOMMU group");
        }
        return VfioOpen.group(agentName, info.iommuGroup(), info.name(), info.identity(0));
    }
}
