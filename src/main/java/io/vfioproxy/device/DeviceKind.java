package io.vfioproxy.device;

import io.vfioproxy.uapi.DeviceState;

/**
 * What kind of VFIO device it is, which decides what a destination may do with a state it loaded.
 */
public enum DeviceKind {
    /**
     * A PCI function, bound to vfio-pci or a variant driver (mlx5_vfio_pci, hisi_acc_vfio_pci, ...). vfio-pci resets
     * it on its first open and its last close, and mlx5 forces RUNNING on open; only its consumer (the VMM) can set up
     * its DMA mappings, MSI-X and bus mastering. So a destination holds it in STOP with the loaded state, open, until
     * the consumer takes it; run by the agent, its first DMA would fault, and closed, its state would be lost.
     */
    PCI_FUNCTION("pci"),
    /**
     * A mediated device (mtty, vGPU mdevs): it keeps its state across close and reopen, and its vendor driver runs it,
     * so a destination may run it once loaded.
     */
    MDEV("mdev");

    private final String wireName;

    DeviceKind(String wireName) {
        this.wireName = wireName;
    }

    /** "pci" or "mdev", as configuration and the API name it. */
    public String wireName() {
        return wireName;
    }

    /** Where a destination leaves such a device after loading it, unless its configuration says otherwise. */
    public DeviceState defaultEndState() {
        return this == MDEV ? DeviceState.RUNNING : DeviceState.STOP;
    }

    /** The kind named {@code name} ("pci" or "mdev"). */
    public static DeviceKind parse(String name) {
        for (DeviceKind k : values()) {
            if (k.wireName.equals(name)) {
                return k;
            }
        }
        throw new IllegalArgumentException("unknown device kind '" + name + "': expected 'pci' or 'mdev'");
    }
}
