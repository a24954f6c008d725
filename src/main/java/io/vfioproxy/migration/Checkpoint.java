package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.file.AsyncFile;
import io.vertx.core.file.OpenOptions;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.uapi.DeviceState;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Set;
import java.util.UUID;

/**
 * A device's state saved to a file and loaded back. The file holds what a source sends on a connection: a HELLO
 * naming the device and its identity, then the device section in SECTION frames, each with its CRC32C. So
 * saving reuses the source's pipeline and loading the destination's, with the same checks and the same
 * backpressure (the device is read only as fast as the file takes it, and memory stays flat).
 */
public final class Checkpoint {

    /**
     * @param dataBytes device data bytes saved or loaded
     * @param deviceState the device's state at the end
     */
    public record Result(long dataBytes, DeviceState deviceState) {
    }

    private Checkpoint() {
    }

    /**
     * Saves the device's state to {@code file}: STOP_COPY, every byte, then STOP, or back to RUNNING with
     * {@code resume}. On failure the device returns to RUNNING and the partial file is deleted.
     */
    public static Future<Result> save(Vertx vertx, DeviceHandle device, Path file, int chunkSize, boolean resume) {
        String id = "checkpoint-" + UUID.randomUUID();
        if (!device.claim(id)) {
            return Future.failedFuture(new MigrationException(Phase.SETUP, "device " + device.name()
                    + " is busy with migration " + device.owner()));
        }
        String cause = id + ": save to " + file;
        SectionSender[] sender = new SectionSender[1];
        DeviceAtStart[] start = new DeviceAtStart[1];
        return DeviceAtStart.read(device, cause).compose(found -> {
            start[0] = found;
            return found.refusal() == null ? vertx.fileSystem().open(file.toString(), new OpenOptions().setWrite(true)
                    .setCreate(true).setTruncateExisting(true))
                    : Future.failedFuture(new MigrationException(Phase.SETUP, found.refusal()));
        }).compose(out -> {
            FrameWriter writer = new FrameWriter(out);
            sender[0] = new SectionSender(vertx, start[0], device.name(), writer, 0, chunkSize);
            Hello hello = new Hello(id, "checkpoint", Mode.STOP_COPY, chunkSize, true, Set.of(),
                    List.of(sender[0].hello()));
            writer.control(FrameType.HELLO, 0, hello.toJson().put("createdAt", Instant.now().toString()));
            return sender[0].setup()
                    .compose(v -> sender[0].stopCopy(cause))
                    .compose(v -> sender[0].end())
                    .compose(v -> out.close())
                    .compose(v -> device.setState(resume ? DeviceState.RUNNING : DeviceState.STOP, DeviceState.ERROR,
                            cause + ": saved"))
                    .compose(v -> device.state())
                    .map(state -> new Result(sender[0].bytesRead(), state))
                    .recover(e -> {
                        sender[0].close();
                        return out.close().transform(ignored -> Future.failedFuture(e));
                    });
        }).recover(e -> (start[0] == null ? Future.succeededFuture()
                : DeviceSafety.restore(List.of(start[0]), cause + ": rollback after failure: " + e.getMessage()))
                .transform(ignored -> vertx.fileSystem().delete(file.toString()))
                .transform(ignored -> Future.<Result>failedFuture(new MigrationException(Phase.STOP_COPY, "saving "
                        + device.name() + " to " + file + " failed: " + e.getMessage(), e))))
                .andThen(ar -> device.release(id));
    }

    /**
     * Loads {@code file} into the device: RESUMING, every byte with its checks, STOP (where the device validates
     * the state), then RUNNING. A file saved from another kind of device is refused before the device is touched.
     * On failure the device is reset.
     */
    public static Future<Result> restore(Vertx vertx, DeviceHandle device, Path file, MigrationOptions options) {
        return vertx.fileSystem().open(file.toString(), new OpenOptions().setRead(true).setCreate(false))
                .recover(e -> Future.failedFuture(new MigrationException(Phase.SETUP, "cannot open checkpoint " + file
                        + ": " + e.getMessage(), e)))
                .compose(in -> new Restore(device, file, options, in).run());
    }

    /** One restore: the file is piped into a decoder whose section loader writes to the device. */
    private static final class Restore implements SectionLoader.Events {
        private final DeviceHandle device;
        private final Path file;
        private final AsyncFile in;
        private final Limits limits;
        private final FrameDecoder decoder;
        private final SectionLoader loader;
        private final Promise<Result> result = Promise.promise();
        private DecodingSink sink;
        private String id;
        private boolean done;

        Restore(DeviceHandle device, Path file, MigrationOptions options, AsyncFile in) {
            this.device = device;
            this.file = file;
            this.in = in;
            this.limits = options.limits();
            this.loader = new SectionLoader("restore from " + file, false, options.deviceWriteQueueBytes(), this);
            this.decoder = new FrameDecoder(options.limits(), SectionLoader.listener(() -> loader, this::onControl));
        }

        Future<Result> run() {
            sink = new DecodingSink(decoder, () -> loader, this::failed);
            in.pipe().endOnSuccess(false).endOnFailure(false).to(sink).onComplete(ar -> {
                if (ar.failed()) {
                    failed(ar.cause());
                } else if (id == null) {
                    failed(new MigrationException(Phase.HANDSHAKE, file + " is not a checkpoint: "
                            + (decoder.bytes() == 0 ? "it is empty" : "it ends " + decoder.position())));
                } else if (!loader.allEnded()) {
                    failed(new MigrationException(Phase.LOADING, "truncated checkpoint: " + file + " ends "
                            + (decoder.midFrame() ? decoder.position() : "before the device section is complete")));
                }
            });
            return result.future().andThen(ar -> in.close());
        }

        private void begin(JsonObject json) {
            Hello hello;
            try {
                hello = Hello.parse(json, limits);
            } catch (Hello.Invalid invalid) {
                throw new MigrationException(Phase.HANDSHAKE, file + " is not a checkpoint: " + invalid.getMessage());
            }
            if (!hello.checkpoint() || hello.devices().size() != 1) {
                throw new MigrationException(Phase.HANDSHAKE, file + " is not a checkpoint of one device (protocol "
                        + Frames.PROTOCOL_VERSION + ")");
            }
            Hello.Device saved = hello.devices().get(0);
            String incompatible = Compatibility.check(device, saved.sourceDevice(), saved.identity());
            if (incompatible != null) {
                throw new MigrationException(Phase.HANDSHAKE, "checkpoint " + file + " cannot be restored: "
                        + incompatible);
            }
            String claim = "restore-" + UUID.randomUUID();
            if (!device.claim(claim)) {
                throw new MigrationException(Phase.HANDSHAKE, "device " + device.name() + " is busy with migration "
                        + device.owner());
            }
            id = claim;
            // The device's thread runs tasks in order: every write the loader queues runs after this one.
            loader.open(saved.channel(), device);
            device.submit(dc -> {
                dc.setState(DeviceState.RESUMING, dc.state(), "restore from " + file);
                return null;
            }).onFailure(this::failed);
        }

        private void onControl(FrameType type, int channel, JsonObject body) {
            if (type == FrameType.HELLO && decoder.frames() == 1) {
                begin(body);
            } else if (type == FrameType.SECTION_END && id != null) {
                loader.sectionEnd(channel, body);
            } else {
                throw new ProtocolException("unexpected " + type + " frame in checkpoint " + file);
            }
        }

        @Override
        public void loaded(int channel, DeviceHandle d, long dataBytes) {
            d.setState(DeviceState.RUNNING, DeviceState.ERROR, "restore from " + file + ": start")
                    .compose(v -> d.state())
                    .onComplete(ar -> {
                        if (ar.failed()) {
                            failed(ar.cause());
                            return;
                        }
                        done = true;
                        d.release(id);
                        result.tryComplete(new Result(dataBytes, ar.result()));
                    });
        }

        @Override
        public void failed(Throwable cause) {
            if (done) {
                return;
            }
            done = true;
            sink.stop();
            loader.abort();
            String reason = cause.getMessage() == null ? cause.toString() : cause.getMessage();
            // Queued behind RESUMING on the device's thread, so it also catches a device still entering it.
            Future<DeviceState> safe = id != null ? DeviceSafety.reset(device, "restore from " + file + " failed: "
                    + reason) : Future.succeededFuture();
            safe.onComplete(ar -> {
                if (id != null) {
                    device.release(id);
                }
                result.tryFail(cause instanceof MigrationException ? cause
                        : new MigrationException(Phase.LOADING, "restoring " + file + " into " + device.name()
                                + " failed: " + reason, cause));
            });
        }
    }
}
