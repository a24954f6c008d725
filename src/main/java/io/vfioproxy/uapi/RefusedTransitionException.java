package io.vfioproxy.uapi;

/**
 * A state change the kernel refuses with EINVAL, found by {@link StateMachine} before any ioctl is issued.
 */
public final class RefusedTransitionException extends IllegalArgumentException {

    private final transient MigrationFlags flags;
    private final DeviceState from;
    private final DeviceState to;

    public RefusedTransitionException(MigrationFlags flags, DeviceState from, DeviceState to, String why) {
        super(from + " -> " + to + " refused (EINVAL): " + why);
        this.flags = flags;
        this.from = from;
        this.to = to;
    }

    public MigrationFlags flags() {
        return flags;
    }

    public DeviceState from() {
        return from;
    }

    public DeviceState to() {
        return to;
    }

    /** Always EINVAL, the errno the kernel gives for these requests. */
    public Errno errno() {
        return Errno.EINVAL;
    }
}
