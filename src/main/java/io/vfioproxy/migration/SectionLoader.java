package io.vfioproxy.migration;

import io.vertx.core.Handler;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DataChannel;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.VfioException;
import io.vfioproxy.migration.MigrationStatus.DeviceBytes;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.VfioTag;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Loads device sections into devices in RESUMING, whether they come from a connection or a checkpoint file:
 * enforces each channel's tag grammar (QEMU's VFIO section: DEV_SETUP_STATE END_OF_STATE, data records and the
 * iterations' END_OF_STATE or DEV_INIT_DATA_SENT, then DEV_CONFIG_STATE END_OF_STATE), writes each data piece to its
 * device in order on the device's thread once the frame's checksum held, checks the counts the source's SECTION_END
 * gives after the section, and then moves the device RESUMING -&gt; STOP, where the device validates the state.
 *
 * <p>Backpressure: {@link #full()} while more than the configured bytes wait for the devices; the drain handler
 * is called when they fall to half of it.
 */
final class SectionLoader {

    /** What becomes of the sections. Called on the loader's context. */
    interface Events {
        /** The channel's device accepted its state and is in STOP. */
        void loaded(int channel, DeviceHandle device, long dataBytes);

        /** A device failed or a section was inconsistent: the whole load is lost. */
        void failed(Throwable cause);

        /** Every byte sent before the channel's DEV_INIT_DATA_SENT reached its device (pre-copy only). */
        default void initialDataLoaded(int channel) {
        }
    }

    /**
     * Where a channel is: in its section (DEV_SETUP_STATE END_OF_STATE, then data and iteration ends, then
     * DEV_CONFIG_STATE END_OF_STATE), past it waiting for the source's SECTION_END, loading, loaded.
     */
    private enum Section { SETUP, SETUP_END, DATA, CONFIG_END, ENDED, LOADING, LOADED }

    private static final class Channel {
        final int id;
        final DeviceHandle device;
        /** Volatile: written on the loader's context only, read for status from the migration's. */
        volatile Section section = Section.SETUP;
        /** Volatile: written on the loader's context only, read for status from the migration's. */
        volatile long dataBytes;
        long dataChunks;
        /** Data bytes up to the last group end in the data part (END_OF_STATE, DEV_INIT_DATA_SENT), and before it. */
        volatile long closedBytes;
        volatile long closedBefore;
        /** Pre-copy iterations the source ended: the groups ended with data in them, or with DEV_INIT_DATA_SENT. */
        volatile long iterations;
        boolean lastGroupCounted;
        boolean initialDataSent;
        /** Set on the device thread when a write failed: the device must not leave RESUMING as if loaded. */
        volatile VfioException writeError;
        /** Set when the load failed: writes still queued for the device are skipped. */
        volatile boolean aborted;
        /** The pieces of the data frame arriving now, held until its checksum holds; each with its release. */
        final List<Piece> frame = new ArrayList<>();
        /** Checked pieces not yet handed to the device's thread: they go as one task with those that follow. */
        final List<Piece> waiting = new ArrayList<>();
        /** Device tasks writing pieces, submitted and not yet completed. */
        int writing;

        Channel(int id, DeviceHandle device) {
            this.id = id;
            this.device = device;
        }
    }

    /** A slice of an input buffer and what releases it once the device has written it (or never will). */
    private record Piece(Buffer bytes, Runnable releaser) {
        void release() {
            releaser.run();
        }
    }

    private static void releaseAll(List<Piece> pieces) {
        pieces.forEach(Piece::release);
        pieces.clear();
    }

    /**
     * Write tasks in flight per channel: one runs on the device's thread while the next waits in its queue, so the
     * device never waits for the event loop, and what arrives meanwhile goes as one task, not one per read.
     */
    private static final int WRITES_IN_FLIGHT = 2;

    private final String cause;
    private final boolean switchoverAck;
    private final int maxQueued;
    private final Events events;
    private final Map<Integer, Channel> channels = new LinkedHashMap<>();
    private long queued;
    /** Volatile: written on the loader's context only, read by the migration's watchdog from its own. */
    private volatile long written;
    private Handler<Void> drainHandler;
    private Supplier<Runnable> retainInput = () -> () -> { };

    /**
     * @param cause what device events name as the cause ("migration m-1")
     * @param switchoverAck the source was told it may send DEV_INIT_DATA_SENT, which this loader acknowledges
     */
    SectionLoader(String cause, boolean switchoverAck, int maxQueued, Events events) {
        this.cause = cause;
        this.switchoverAck = switchoverAck;
        this.maxQueued = maxQueued;
        this.events = events;
    }

    /**
     * How to keep the input buffer a data piece is a slice of alive until the device has written it: the
     * connection hands on its pooled buffers without copying them.
     */
    void retainInput(Supplier<Runnable> retain) {
        this.retainInput = retain;
    }

    /** Adds a channel whose device is in RESUMING. */
    void open(int id, DeviceHandle device) {
        channels.put(id, new Channel(id, device));
    }

    /** True once every channel's section and its SECTION_END arrived (its device is loading or loaded). */
    boolean allEnded() {
        return channels.values().stream().allMatch(c -> c.section == Section.LOADING || c.section == Section.LOADED);
    }

    /**
     * {@code device}'s data bytes as the source sent them: while the devices ran, and after they stopped. Once its
     * section's data ended, the last group is the stop-copy data; before, the data since the last iteration counts as
     * pre-copy when {@code precopy} (the migration's mode), as stop-copy data otherwise. Any thread: a read racing
     * the loader may split the bytes as of a moment earlier, never lose them.
     */
    DeviceBytes deviceBytes(DeviceHandle device, boolean precopy) {
        long pre = 0;
        long stop = 0;
        for (Channel c : channels.values()) {
            if (c.device != device) {
                continue;
            }
            // The section first: once past its data, the bytes read after it are final.
            Section section = c.section;
            long data = c.dataBytes;
            if (section != Section.SETUP && section != Section.SETUP_END && section != Section.DATA) {
                pre += c.closedBefore;
                stop += data - c.closedBefore;
            } else if (precopy) {
                pre += data;
            } else {
                stop += data;
            }
        }
        return new DeviceBytes(pre, stop);
    }

    /** Pre-copy iterations the source ended, on every channel. */
    long iterations() {
        return channels.values().stream().mapToLong(c -> c.iterations).sum();
    }

    /** Bytes the devices have taken so far. */
    long written() {
        return written;
    }

    boolean full() {
        return queued >= maxQueued;
    }

    void drainHandler(Handler<Void> handler) {
        drainHandler = handler;
    }

    /** Skips every write still queued and lets a paused input flow again, to be read and dropped. */
    void abort() {
        channels.values().forEach(c -> {
            c.aborted = true;
            // The frame that was arriving, and what waited for the device, never reach it.
            releaseAll(c.frame);
            releaseAll(c.waiting);
        });
        queued = 0;
        drain();
    }

    private void drain() {
        if (drainHandler != null && queued < maxQueued / 2) {
            Handler<Void> h = drainHandler;
            drainHandler = null;
            h.handle(null);
        }
    }

    private Channel channel(int id) {
        Channel c = channels.get(id);
        if (c == null) {
            throw new ProtocolException("SECTION frame for channel " + id + ", which was not opened");
        }
        return c;
    }

    private static void expect(Channel c, Section expected, String what) {
        if (c.section != expected) {
            throw new ProtocolException(what + " on channel " + c.id + " where the section is in state " + c.section);
        }
    }

    void marker(int id, VfioTag tag) {
        Channel c = channel(id);
        switch (tag) {
            case DEV_SETUP_STATE -> {
                expect(c, Section.SETUP, tag.name());
                c.section = Section.SETUP_END;
            }
            case END_OF_STATE -> {
                switch (c.section) {
                    case SETUP_END -> c.section = Section.DATA;
                    case DATA -> endGroup(c, c.dataBytes > c.closedBytes);
                    case CONFIG_END -> c.section = Section.ENDED;
                    default -> throw new ProtocolException("END_OF_STATE on channel " + c.id
                            + " where the section is in state " + c.section);
                }
            }
            case DEV_INIT_DATA_SENT -> {
                expect(c, Section.DATA, tag.name());
                if (!switchoverAck || c.initialDataSent) {
                    throw new ProtocolException(tag + " on channel " + c.id + (switchoverAck ? " a second time"
                            : ": sent without the switchover acknowledgement this agent agreed to"));
                }
                c.initialDataSent = true;
                endGroup(c, true);
                // Queued behind every write of this device: acknowledged once the initial data is loaded.
                submitWaiting(c);
                c.device.submit(dc -> null).onSuccess(v -> {
                    if (!c.aborted) {
                        events.initialDataLoaded(c.id);
                    }
                });
            }
            case DEV_CONFIG_LOAD_READY -> throw new ProtocolException(tag + " on channel " + c.id
                    + ": QEMU 10's multifd device-state tag, which agents do not send");
            default -> throw new ProtocolException(tag + " on channel " + c.id + " is not a section marker");
        }
    }

    /**
     * A group of data records ended. Only DEV_CONFIG_STATE tells which was the last, the stop-copy data (1.4 of
     * docs/PROTOCOL.md): until then each counts as a pre-copy iteration.
     */
    private static void endGroup(Channel c, boolean iteration) {
        c.closedBefore = c.closedBytes;
        c.closedBytes = c.dataBytes;
        c.lastGroupCounted = iteration;
        if (iteration) {
            c.iterations++;
        }
    }

    /** DEV_CONFIG_STATE: QEMU's device config (VMState) would follow; a device driven by the agent has none. */
    void config(int id, Buffer blob) {
        Channel c = channel(id);
        expect(c, Section.DATA, "DEV_CONFIG_STATE");
        if (blob.length() != 0) {
            throw new ProtocolException("DEV_CONFIG_STATE on channel " + c.id + " carries " + blob.length()
                    + " bytes of device config, which an agent-driven device does not have");
        }
        // The group that ended last was the stop-copy data, not an iteration.
        if (c.lastGroupCounted) {
            c.iterations--;
        }
        c.section = Section.CONFIG_END;
    }

    /** The source's check of the channel's ended section: its counts, then the load. */
    void sectionEnd(int id, JsonObject counts) {
        Channel c = channel(id);
        expect(c, Section.ENDED, "SECTION_END");
        load(c, counts);
    }

    void dataStart(int id) {
        expect(channel(id), Section.DATA, "DEV_DATA_STATE");
    }

    /**
     * A piece of a data frame: held (its input buffer retained) until the frame ends and its checksum held, so a
     * corrupted frame never reaches the device. At most one frame (stream.maxChunk) per channel is held.
     */
    void data(int id, Buffer piece) {
        Channel c = channels.get(id);
        c.dataBytes += piece.length();
        c.frame.add(new Piece(piece, retainInput.get()));
    }

    /** The data frame's checksum held (the decoder checks it before it says so): its pieces go to the device. */
    void dataEnd(int id) {
        Channel c = channels.get(id);
        c.dataChunks++;
        for (Piece p : c.frame) {
            // Counted from here: a frame still arriving is not waiting for the device, and pausing the input for it
            // would keep its end from ever arriving.
            queued += p.bytes().length();
            c.waiting.add(p);
        }
        c.frame.clear();
        if (c.writing < WRITES_IN_FLIGHT) {
            submitWaiting(c);
        }
    }

    /**
     * Hands every waiting piece to the device's thread as one task, written in order. Tasks run in the order they
     * are submitted, so whatever is submitted after this (an acknowledgement, the load) runs after these writes.
     */
    private void submitWaiting(Channel c) {
        if (c.waiting.isEmpty()) {
            return;
        }
        // Handed over before the task runs: a write that fails at once aborts the load, and the abort must not
        // release again what the task releases itself.
        List<Piece> batch = List.copyOf(c.waiting);
        c.waiting.clear();
        long bytes = batch.stream().mapToLong(p -> p.bytes().length()).sum();
        c.writing++;
        c.device.submit(dc -> {
            if (c.writeError != null || c.aborted) {
                return null;
            }
            try {
                DataChannel data = dc.channel().orElseThrow(() -> new VfioException(dc.name(), "write(data_fd)",
                        dc.state(), Errno.EBADF, "no resuming session is open"));
                for (Piece p : batch) {
                    data.write(Frames.nio(p.bytes(), 0, p.bytes().length()));
                }
            } catch (VfioException e) {
                c.writeError = e;
                throw e;
            }
            return null;
        }).onComplete(ar -> {
            c.writing--;
            batch.forEach(Piece::release);
            if (c.aborted) {
                return;
            }
            queued -= bytes;
            written += bytes;
            if (ar.failed()) {
                events.failed(ar.cause());
                return;
            }
            drain();
            submitWaiting(c);
        });
    }

    private void load(Channel c, JsonObject counts) {
        long bytes = counts.getValue("dataBytes") instanceof Number n ? n.longValue() : -1;
        long chunks = counts.getValue("dataChunks") instanceof Number n ? n.longValue() : -1;
        if (bytes != c.dataBytes || chunks != c.dataChunks) {
            throw new ProtocolException("channel " + c.id + ": the source sent " + bytes + " bytes in " + chunks
                    + " chunks, " + c.dataBytes + " bytes in " + c.dataChunks + " chunks arrived");
        }
        c.section = Section.LOADING;
        // Queued behind every write of this device: the device validates the whole stream here.
        submitWaiting(c);
        c.device.submit(dc -> {
            if (c.writeError != null) {
                throw c.writeError;
            }
            dc.setState(DeviceState.STOP, DeviceState.ERROR, cause + ": loading the migrated state");
            return null;
        }).onComplete(ar -> {
            if (c.aborted) {
                return;
            }
            if (ar.failed()) {
                events.failed(new MigrationException(Phase.LOADING, "device " + c.device.name()
                        + " rejected the migrated state: " + ar.cause().getMessage(), ar.cause()));
                return;
            }
            c.section = Section.LOADED;
            events.loaded(c.id, c.device, c.dataBytes);
        });
    }

    /**
     * A decoder listener that hands control frames to {@code control} and SECTION records to the loader
     * {@code sections} returns; that supplier throws a {@link ProtocolException} where sections are not allowed.
     */
    static FrameDecoder.Listener listener(Supplier<SectionLoader> sections, FrameDecoder.ControlHandler control) {
        return new FrameDecoder.Listener() {
            @Override
            public void onControl(FrameType type, int channel, JsonObject body) {
                control.onControl(type, channel, body);
            }

            @Override
            public void onMarker(int channel, VfioTag tag) {
                sections.get().marker(channel, tag);
            }

            @Override
            public void onConfig(int channel, Buffer blob) {
                sections.get().config(channel, blob);
            }

            @Override
            public void onDataStart(int channel, long size) {
                sections.get().dataStart(channel);
            }

            @Override
            public void onData(int channel, Buffer piece) {
                sections.get().data(channel, piece);
            }

            @Override
            public void onDataEnd(int channel) {
                sections.get().dataEnd(channel);
            }
        };
    }
}
