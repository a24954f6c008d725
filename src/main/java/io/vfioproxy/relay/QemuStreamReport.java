package io.vfioproxy.relay;

import io.vertx.core.json.JsonObject;
import java.util.Map;

/**
 * What {@link QemuStreamObserver} saw in a main channel.
 *
 * @param bytes bytes of the channel observed
 * @param bytesByKind bytes per kind of section: "ram", "vfio", "device" (VMState), "other" (header, configuration,
 *        commands, EOF, the VM description, and whatever it could not parse)
 * @param devices per section idstr ("ram", "0000:00:05.0/vfio", "timer", ...), in the order they first came
 * @param normalPages RAM pages sent whole on this channel (RAM_SAVE_FLAG_PAGE)
 * @param zeroPages RAM pages sent as zero pages (RAM_SAVE_FLAG_ZERO; QEMU counts them as "duplicate")
 * @param xbzrlePages RAM pages sent XBZRLE-encoded
 * @param compressedPages RAM pages sent compressed
 * @param passes passes over the guest's memory: how often the pages' addresses went back to the start
 * @param ramIterations RAM sections of the iterative phase (SECTION_PART), one per call of QEMU's iterate
 * @param firstSectionEndNanos when the first SECTION_END passed (the source VM had stopped), or -1
 * @param eofNanos when QEMU's EOF passed, or -1
 * @param firstSectionEndOffset where the first SECTION_END was in the channel, or -1
 * @param eofOffset where EOF was, or -1
 * @param complete whether the stream reached its end as QEMU ends it (EOF, then the VM description)
 * @param note where and why the observer stopped parsing, or null
 */
public record QemuStreamReport(long bytes, Map<String, Long> bytesByKind, Map<String, Device> devices,
        long normalPages, long zeroPages, long xbzrlePages, long compressedPages, long passes, long ramIterations,
        long firstSectionEndNanos, long eofNanos, long firstSectionEndOffset, long eofOffset, boolean complete,
        String note) {

    /**
     * One idstr's sections.
     *
     * @param kind "ram", "vfio" or "device"
     * @param bytes bytes of its sections, headers and footers included
     * @param sections how many sections
     * @param stateBytes VFIO only: the device's state bytes (DEV_DATA_STATE data)
     * @param iterations VFIO only: pre-copy iterations (SECTION_PART sections closed by END_OF_STATE)
     */
    public record Device(String kind, long bytes, long sections, long stateBytes, long iterations) {
        JsonObject toJson() {
            JsonObject json = new JsonObject().put("kind", kind).put("bytes", bytes).put("sections", sections);
            if (kind.equals("vfio")) {
                json.put("stateBytes", stateBytes).put("iterations", iterations);
            }
            return json;
        }
    }

    public QemuStreamReport {
        bytesByKind = Map.copyOf(bytesByKind);
        devices = java.util.Collections.unmodifiableMap(new java.util.LinkedHashMap<>(devices));
    }

    /** From the first SECTION_END to EOF: the downtime as the wire shows it, or -1 where either is missing. */
    public long wireDowntimeNanos() {
        return firstSectionEndNanos < 0 || eofNanos < 0 ? -1 : eofNanos - firstSectionEndNanos;
    }

    public JsonObject toJson() {
        JsonObject devs = new JsonObject();
        devices.forEach((id, d) -> devs.put(id, d.toJson()));
        JsonObject json = new JsonObject()
                .put("bytes", bytes)
                .put("bytesByKind", new JsonObject(new java.util.TreeMap<>(bytesByKind)))
                .put("ram", new JsonObject().put("normalPages", normalPages).put("zeroPages", zeroPages)
                        .put("xbzrlePages", xbzrlePages).put("compressedPages", compressedPages)
                        .put("passes", passes).put("iterateSections", ramIterations))
                .put("devices", devs)
                .put("complete", complete);
        if (firstSectionEndOffset >= 0) {
            json.put("firstSectionEndOffset", firstSectionEndOffset);
        }
        if (wireDowntimeNanos() >= 0) {
            json.put("wireDowntimeMillis", wireDowntimeNanos() / 1e6);
        }
        if (note != null) {
            json.put("note", note);
        }
        return json;
    }
}
