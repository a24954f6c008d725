package io.vfioproxy.uapi;

/**
 * The Linux errno values that VFIO migration calls return (asm-generic/errno-base.h and errno.h, x86_64).
 */
public enum Errno {
    EPERM(1, "operation not permitted"),
    ENOENT(2, "no such file or directory"),
    EINTR(4, "interrupted system call"),
    EIO(5, "I/O error"),
    ENXIO(6, "no such device or address"),
    EBADF(9, "bad file descriptor"),
    EAGAIN(11, "try again"),
    ENOMEM(12, "out of memory"),
    EACCES(13, "permission denied"),
    EFAULT(14, "bad address"),
    EBUSY(16, "device or resource busy"),
    EEXIST(17, "file exists"),
    ENODEV(19, "no such device"),
    EINVAL(22, "invalid argument"),
    ENOTTY(25, "inappropriate ioctl for device"),
    ENOSPC(28, "no space left on device"),
    ESPIPE(29, "illegal seek"),
    EPIPE(32, "broken pipe"),
    ENOMSG(42, "no message of desired type"),
    EOVERFLOW(75, "value too large for defined data type"),
    EOPNOTSUPP(95, "operation not supported"),
    ETIMEDOUT(110, "connection timed out");

    private final int value;
    private final String description;

    Errno(int value, String description) {
        this.value = value;
        this.description = description;
    }

    public int value() {
        return value;
    }

    public String description() {
        return description;
    }

    /** The name of errno {@code value} ("EINVAL"), or "errno N" for one this table does not list. */
    public static String nameOf(int value) {
        for (Errno e : values()) {
            if (e.value == value) {
                return e.name();
            }
        }
        return "errno " + value;
    }

    /** The entry for {@code value}, or null. */
    public static Errno of(int value) {
        for (Errno e : values()) {
            if (e.value == value) {
                return e;
            }
        }
        return null;
    }
}
