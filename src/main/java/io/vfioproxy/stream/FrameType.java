package io.vfioproxy.stream;

import io.vfioproxy.util.Enums;

/**
 * The frame types of the agent-to-agent protocol (docs/PROTOCOL.md). Control frames carry a UTF-8 JSON object;
 * SECTION frames carry one record of a device's VFIO tagged stream.
 */
public enum FrameType {
    /** Source to destination, first frame: the migration, its devices and their identities. */
    HELLO(0x01, true),
    /** Destination to source: every device is in RESUMING and ready for data. */
    ACCEPT(0x02, true),
    /** Destination to source: the migration is refused; the reason is in the payload. The connection closes. */
    REFUSE(0x03, true),
    /** Source to destination: one record of a device's VFIO tagged stream, on the frame's channel. */
    SECTION(0x10, false),
    /**
     * Source to destination, after the channel's section ended: the agent's own check of it, {@code {"dataBytes",
     * "dataChunks"}}, which the destination compares with what arrived before it loads the device. Kept out of the
     * section itself, whose content is QEMU's.
     */
    SECTION_END(0x11, true),
    /** Destination to source: the channel's device accepted its state and is in STOP, ready to run. */
    LOADED(0x20, true),
    /**
     * Destination to source: the channel's device has loaded every byte of initial pre-copy data the source sent
     * before DEV_INIT_DATA_SENT (QEMU's switchover acknowledgement); the source may switch over.
     */
    SWITCHOVER_ACK(0x23, true),
    /** Source to destination: the source has committed; run the devices. */
    START(0x21, true),
    /** Destination to source: the devices run. */
    STARTED(0x22, true),
    /** Either way: the migration failed; the reason is in the payload. The connection closes. */
    ABORT(0x7f, true);

    private final int code;
    private final boolean control;

    FrameType(int code, boolean control) {
        this.code = code;
        this.control = control;
    }

    public int code() {
        return code;
    }

    /** True when the payload is a JSON object. */
    public boolean isControl() {
        return control;
    }

    /** The type with this code, or null. */
    public static FrameType of(int code) {
        return Enums.find(values(), t -> t.code == code);
    }
}
