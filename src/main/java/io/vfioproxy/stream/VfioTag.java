package io.vfioproxy.stream;

import io.vfioproxy.util.Enums;

/**
 * QEMU's VFIO device-section tags, written big-endian as u64 ahead of each part of a device's stream.
 *
 * <p>From QEMU hw/vfio/vfio-migration-internal.h (hw/vfio/migration.c before 10.0): 0xffffffff (MSB all 1s) |
 * 0xef10 (magic) | 16-bit flag. A tag outside this list is an error that names it in hex.
 */
public enum VfioTag {
    END_OF_STATE(0xffffffffef100001L),
    DEV_CONFIG_STATE(0xffffffffef100002L),
    DEV_SETUP_STATE(0xffffffffef100003L),
    DEV_DATA_STATE(0xffffffffef100004L),
    DEV_INIT_DATA_SENT(0xffffffffef100005L),
    /**
     * QEMU 10: the source's device config is ready to load before the switchover (multifd device state); QEMU's own
     * stream may carry it, the agents' does not.
     */
    DEV_CONFIG_LOAD_READY(0xffffffffef100006L);

    private final long value;

    VfioTag(long value) {
        this.value = value;
    }

    public long value() {
        return value;
    }

    /** The tag with this value, or null for a value QEMU does not define. */
    public static VfioTag of(long value) {
        return Enums.find(values(), t -> t.value == value);
    }
}
