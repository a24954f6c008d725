package io.vfioproxy.device.sim;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;

/**
 * Faults a simulated device injects, so tests and demos can show every failure path on purpose.
 * Each field is off by default. Read under the device's lock.
 */
public final class FaultPlan {

    private DeviceState arcFrom;
    private DeviceState arcTo;
    private Errno arcErrno = Errno.EIO;
    private boolean arcToError;
    private long readFailAt = -1;
    private Errno readErrno = Errno.EIO;
    private long writeFailAt = -1;
    private Errno writeErrno = Errno.EIO;
    private long writeDelayMillis;
    private Errno resetErrno;
    private Errno dataSizeErrno;

    /** Fails the direct arc {@code from -> to} with {@code errno}; with {@code toError} the device lands in ERROR. */
    public FaultPlan failArc(DeviceState from, DeviceState to, Errno errno, boolean toError) {
        this.arcFrom = from;
        this.arcTo = to;
        this.arcErrno = errno;
        this.arcToError = toError;
        return this;
    }

    /** Fails the read that would pass byte {@code offset} of a saving session's stream. */
    public FaultPlan failReadAt(long offset, Errno errno) {
        this.readFailAt = offset;
        this.readErrno = errno;
        return this;
    }

    /** Fails the write that would pass byte {@code offset} of a resuming session's stream. */
    public FaultPlan failWriteAt(long offset, Errno errno) {
        this.writeFailAt = offset;
        this.writeErrno = errno;
        return this;
    }

    /**
     * Makes every write to a resuming session take at least {@code millis}: a device that absorbs its state more
     * slowly than the link brings it, so the destination holds back the connection.
     */
    public FaultPlan delayWrites(long millis) {
        this.writeDelayMillis = millis;
        return this;
    }

    /** Fails VFIO_DEVICE_RESET with {@code errno}, leaving the state as it was. */
    public FaultPlan failReset(Errno errno) {
        this.resetErrno = errno;
        return this;
    }

    /** Fails GET MIG_DATA_SIZE with {@code errno}, as kernels before 6.2 (ENOTTY) or a failing driver do. */
    public FaultPlan failDataSize(Errno errno) {
        this.dataSizeErrno = errno;
        return this;
    }

    /** Removes every fault. */
    public FaultPlan clear() {
        arcFrom = null;
        arcTo = null;
        readFailAt = -1;
        writeFailAt = -1;
        writeDelayMillis = 0;
        resetErrno = null;
        dataSizeErrno = null;
        return this;
    }

    boolean failsArc(DeviceState from, DeviceState to) {
        return from == arcFrom && to == arcTo;
    }

    Errno arcErrno() {
        return arcErrno;
    }

    boolean arcToError() {
        return arcToError;
    }

    long readFailAt() {
        return readFailAt;
    }

    Errno readErrno() {
        return readErrno;
    }

    long writeFailAt() {
        return writeFailAt;
    }

    Errno writeErrno() {
        return writeErrno;
    }

    long writeDelayMillis() {
        return writeDelayMillis;
    }

    /** The errno a reset fails with, or null. */
    Errno resetErrno() {
        return resetErrno;
    }

    /** The errno MIG_DATA_SIZE fails with, or null. */
    Errno dataSizeErrno() {
        return dataSizeErrno;
    }

    /**
     * Reads faults from configuration: {@code {"failArc": "STOP->STOP_COPY", "failArcErrno": "EIO",
     * "failArcToError": false, "failReadAt": 1048576, "failWriteAt": 4096, "errno": "EIO", "writeDelayMillis": 20,
     * "failReset": "EIO", "failDataSize": "ENOTTY"}}.
     */
    public static FaultPlan fromJson(JsonObject json) {
        FaultPlan plan = new FaultPlan();
        if (json == null) {
            return plan;
        }
        String arc = json.getString("failArc");
        if (arc != null) {
            String[] ends = arc.split("->");
            if (ends.length != 2) {
                throw new IllegalArgumentException("failArc must look like FROM->TO, got '" + arc + "'");
            }
            plan.failArc(DeviceState.parse(ends[0]), DeviceState.parse(ends[1]),
                    errno(json.getString("failArcErrno", "EIO")), json.getBoolean("failArcToError", false));
        }
        Errno errno = errno(json.getString("errno", "EIO"));
        if (json.containsKey("failReadAt")) {
            plan.failReadAt(json.getLong("failReadAt"), errno);
        }
        if (json.containsKey("failWriteAt")) {
            plan.failWriteAt(json.getLong("failWriteAt"), errno);
        }
        plan.delayWrites(json.getLong("writeDelayMillis", 0L));
        if (json.containsKey("failReset")) {
            plan.failReset(errno(json.getString("failReset")));
        }
        if (json.containsKey("failDataSize")) {
            plan.failDataSize(errno(json.getString("failDataSize")));
        }
        return plan;
    }

    private static Errno errno(String name) {
        try {
            return Errno.valueOf(name.trim().toUpperCase());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown errno name '" + name + "'");
        }
    }
}
