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
    /**
     * Source to destination, first frame of a device's own connection (feature {@code device-connections}):
     * {@code {"migration", "channel", "token"}}, the token the destination's ACCEPT gave. The destination answers
     * JOINED, or REFUSE.
     */
    JOIN(0x04, true),
    /** Destination to source: the connection now carries the channel's section. */
    JOINED(0x05, true),
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
    /**
     * Source to destination, first frame of a relay channel: {@code {"relay", "channel", "target",
     * "sourceAgent"}}. The destination connects the channel to the target (if it is allowed) and answers
     * RELAY_OPENED, or REFUSE.
     */
    RELAY_OPEN(0x30, true),
    /** Destination to source: the channel is connected to its target; relayed bytes may flow both ways. */
    RELAY_OPENED(0x31, true),
    /** Either way: the next bytes of the channel's stream in this direction, as the hypervisor wrote them. */
    RELAY_DATA(0x32, Payload.RAW),
    /** Either way: this direction of the channel ended cleanly, {@code {"bytes": N}} in all. */
    RELAY_END(0x33, true),
    /** Either way: the migration failed; the reason is in the payload. The connection closes. */
    ABORT(0x7f, true);

    /** What a frame's payload is. */
    public enum Payload {
        /** A UTF-8 JSON object. */
        JSON,
        /** One record of a device's VFIO section. */
        SECTION,
        /** Opaque bytes, handed on once their CRC32C matched. */
        RAW
    }

    private final int code;
    private final Payload payload;

    FrameType(int code, boolean control) {
        this(code, control ? Payload.JSON : Payload.SECTION);
    }

    FrameType(int code, Payload payload) {
        this.code = code;
        this.payload = payload;
    }

    public int code() {
        return code;
    }

    public Payload payload() {
        return payload;
    }

    /** True when the payload is a JSON object. */
    public boolean isControl() {
        return payload == Payload.JSON;
    }

    /** The type with this code, or null. */
    public static FrameType of(int code) {
        return Enums.find(values(), t -> t.code == code);
    }
}
