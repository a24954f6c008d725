package io.vfioproxy.uapi;

import java.util.Arrays;

/**
 * The migration states of a VFIO device, {@code enum vfio_device_mig_state}.
 *
 * <p>Values from include/uapi/linux/vfio.h (Linux 6.12).
 */
public enum DeviceState {
    ERROR(0),
    STOP(1),
    RUNNING(2),
    STOP_COPY(3),
    RESUMING(4),
    RUNNING_P2P(5),
    PRE_COPY(6),
    PRE_COPY_P2P(7);

    /** VFIO_DEVICE_STATE_NR: the number of states the kernel knows. */
    public static final int COUNT = 8;

    private static final DeviceState[] BY_VALUE = new DeviceState[COUNT];

    static {
        for (DeviceState s : values()) {
            BY_VALUE[s.value] = s;
        }
    }

    private final int value;

    DeviceState(int value) {
        this.value = value;
    }

    /** The uAPI value of this state. */
    public int value() {
        return value;
    }

    /**
     * The state with the given uAPI value.
     *
     * @throws IllegalArgumentException when the kernel knows no such state
     */
    public static DeviceState of(int value) {
        if (value < 0 || value >= COUNT) {
            throw new IllegalArgumentException("no VFIO device state has the value " + value);
        }
        return BY_VALUE[value];
    }

    /** The state named {@code name}, case-insensitively, with a clear error listing the valid names. */
    public static DeviceState parse(String name) {
        for (DeviceState s : values()) {
            if (s.name().equalsIgnoreCase(name.trim())) {
                return s;
            }
        }
        throw new IllegalArgumentException("unknown device state '" + name + "', expected one of "
                + Arrays.toString(values()));
    }

    /** True for the states of the saving group, which share one data session: PRE_COPY, PRE_COPY_P2P, STOP_COPY. */
    public boolean isSaving() {
        return this == PRE_COPY || this == PRE_COPY_P2P || this == STOP_COPY;
    }

    /** True where the device runs and may change its internal state: RUNNING and PRE_COPY. */
    public boolean isRunning() {
        return this == RUNNING || this == PRE_COPY;
    }
}
