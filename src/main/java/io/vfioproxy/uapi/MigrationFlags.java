package io.vfioproxy.uapi;

import java.util.ArrayList;
import java.util.List;

/**
 * The migration capabilities a device reports through VFIO_DEVICE_FEATURE_MIGRATION
 * ({@code struct vfio_device_feature_migration.flags}).
 *
 * <p>Bits from include/uapi/linux/vfio.h: VFIO_MIGRATION_STOP_COPY (1 &lt;&lt; 0), VFIO_MIGRATION_P2P (1 &lt;&lt; 1),
 * VFIO_MIGRATION_PRE_COPY (1 &lt;&lt; 2).
 *
 * @param bits the raw flags word
 */
public record MigrationFlags(long bits) {

    public static final long VFIO_MIGRATION_STOP_COPY = 1L << 0;
    public static final long VFIO_MIGRATION_P2P = 1L << 1;
    public static final long VFIO_MIGRATION_PRE_COPY = 1L << 2;

    /** The four flag sets the kernel defines behaviour for (STOP_COPY is mandatory). */
    public static final List<MigrationFlags> DEFINED = List.of(
            new MigrationFlags(VFIO_MIGRATION_STOP_COPY),
            new MigrationFlags(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P),
            new MigrationFlags(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY),
            new MigrationFlags(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY));

    public static final MigrationFlags ALL = DEFINED.get(3);

    public boolean stopCopy() {
        return (bits & VFIO_MIGRATION_STOP_COPY) != 0;
    }

    public boolean p2p() {
        return (bits & VFIO_MIGRATION_P2P) != 0;
    }

    public boolean preCopy() {
        return (bits & VFIO_MIGRATION_PRE_COPY) != 0;
    }

    /**
     * True when the device supports {@code state}: the kernel's {@code state_flags_table} in
     * drivers/vfio/vfio_main.c. ERROR needs every bit, so it is never "supported" as a state one can walk to.
     */
    public boolean supports(DeviceState state) {
        long needed = switch (state) {
            case STOP, RUNNING, STOP_COPY, RESUMING -> VFIO_MIGRATION_STOP_COPY;
            case RUNNING_P2P -> VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;
            case PRE_COPY -> VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;
            case PRE_COPY_P2P -> VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;
            case ERROR -> ~0L;
        };
        return (bits & needed) == needed;
    }

    /**
     * Parses a comma-separated list of flag names, for example {@code STOP_COPY,P2P,PRE_COPY}.
     *
     * @throws IllegalArgumentException on an unknown name or a set without STOP_COPY
     */
    public static MigrationFlags parse(String text) {
        long bits = 0;
        for (String part : text.split(",")) {
            String name = part.trim().toUpperCase();
            if (name.isEmpty()) {
                continue;
            }
            bits |= switch (name) {
                case "STOP_COPY" -> VFIO_MIGRATION_STOP_COPY;
                case "P2P" -> VFIO_MIGRATION_P2P;
                case "PRE_COPY" -> VFIO_MIGRATION_PRE_COPY;
                default -> throw new IllegalArgumentException(
                        "unknown migration flag '" + part.trim() + "', expected STOP_COPY, P2P or PRE_COPY");
            };
        }
        if ((bits & VFIO_MIGRATION_STOP_COPY) == 0) {
            throw new IllegalArgumentException("migration flags '" + text + "' lack STOP_COPY, which every migratable device has");
        }
        return new MigrationFlags(bits);
    }

    @Override
    public String toString() {
        List<String> names = new ArrayList<>();
        if (stopCopy()) {
            names.add("STOP_COPY");
        }
        if (p2p()) {
            names.add("P2P");
        }
        if (preCopy()) {
            names.add("PRE_COPY");
        }
        long unknown = bits & ~(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY);
        if (unknown != 0) {
            names.add("0x" + Long.toHexString(unknown));
        }
        return names.isEmpty() ? "NONE" : String.join(",", names);
    }
}
