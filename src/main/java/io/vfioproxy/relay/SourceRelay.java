package io.vfioproxy.relay;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetSocket;
import io.vertx.core.streams.ReadStream;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.PrefixedReadStream;
import io.vfioproxy.stream.StreamConnector;
import io.vfioproxy.vertx.DirectInput;
import io.vfioproxy.vertx.VertxInternals;
import java.util.ArrayList;
import java.util.List;

/**
 * The source side of one relay: listens where the source hypervisor migrates to, carries each connection it opens
 * (QEMU's main channel first, then its multifd channels) over a connection of its own to the destination agent,
 * and watches the main channel's stream as it passes ({@link QemuStreamObserver}).
 *
 * <p>It completes once the main channel and every other ended cleanly, and QEMU's stream reached its EOF (or
 * could not be parsed, so it cannot tell); it fails, closing every channel at once, as soon as one fails. Runs on
 * its own context; channels run on the contexts their sockets were accepted on.
 */
final class SourceRelay {

    /** How long a new connection may take to show its first four bytes before it is taken as it came. */
    private static final long PEEK_MILLIS = 500;

    private final Vertx vertx;
    private final String agent;
    private final RelayRequest request;
    private final RelayOptions options;
    private final Limits limits;
    private final StreamConnector connector;
    private final RelayRecord record;
    private final RelayService.Ending ending;
    private final List<Slot> slots = new ArrayList<>();
    private final Promise<Void> done = Promise.promise();
    private Context context;
    private LocalListener listener;
    private long idleTimer = -1;
    private boolean ended;
    private boolean mainTaken;
    private int nextIndex = 1;
    /** Completes once the main channel reached the destination: the others open after it. */
    private final Promise<Void> mainOpened = Promise.promise();

    /** One accepted connection of the hypervisor and its channel. */
    private static final class Slot {
        final NetSocket socket;
        final ChannelTap tap;
        /** The connection's input, its first bytes replayed once they were looked at. */
        ReadStream<Buffer> input;
        int index = -1;
        RelayChannel channel;

        Slot(NetSocket socket, ChannelTap tap) {
            this.socket = socket;
            this.tap = tap;
        }
    }

    SourceRelay(Vertx vertx, String agent, RelayRequest request, RelayOptions options, Limits limits,
            StreamConnector connector, RelayRecord record, RelayService.Ending ending) {
        this.vertx = vertx;
        this.agent = agent;
        this.request = request;
        this.options = options;
        this.limits = limits;
        this.connector = connector;
        this.record = record;
        this.ending = ending;
    }

    RelayRecord record() {
        return record;
    }

    Future<Void> done() {
        return done.future();
    }

    /**
     * Asks the destination whether it takes this relay (its protocol, and the target against its
     * relay.allowedTargets) before anything listens: a relay it would refuse is refused before the hypervisor is
     * told where to migrate.
     */
    private Future<Void> probe() {
        return connector.connect(request.destination()).compose(connection -> {
            Promise<Void> answer = Promise.promise();
            RelayChannel probe = new RelayChannel(vertx, 0, connection, limits, (type, body) -> {
                if (type == FrameType.RELAY_OPENED) {
                    answer.tryComplete();
                } else if (type == FrameType.REFUSE) {
                    answer.tryFail(new RelayService.Rejected(409, "the destination " + request.destination()
                            + " refused the relay: " + body.getString("reason", "no reason given")));
                }
                connection.close();
            }, new RelayChannel.Listener() {
                @Override
                public void ended(RelayChannel channel) {
                }

                @Override
                public void failed(RelayChannel channel, String reason, boolean fromPeer) {
                    answer.tryFail(new RelayService.Rejected(409, "the destination " + request.destination()
                            + " did not answer: " + reason));
                }
            });
            probe.start();
            probe.send(FrameType.RELAY_OPEN, openBody(0).put("probe", true));
            long timer = vertx.setTimer(options.openTimeoutMillis(), id -> {
                answer.tryFail(new RelayService.Rejected(409, "the destination " + request.destination()
                        + " did not answer within " + options.openTimeoutMillis() + " ms"));
                connection.close();
            });
            return answer.future().andThen(ar -> vertx.cancelTimer(timer));
        }, e -> Future.failedFuture(new RelayService.Rejected(409, "the destination " + request.destination()
                + " cannot be reached: " + e.getMessage())));
    }

    private JsonObject openBody(int index) {
        return new JsonObject().put("protocol", Frames.PROTOCOL_VERSION).put("relay", record.id())
                .put("channel", index).put("target", request.target().toString()).put("sourceAgent", agent);
    }

    /** Listens, once the destination said it takes the relay; completes with the address for the hypervisor. */
    Future<RelayAddress> start() {
        context = vertx.getOrCreateContext();
        return probe().compose(v -> listen());
    }

    private Future<RelayAddress> listen() {
        RelayAddress where = request.listen() != null ? request.listen()
                : RelayAddress.parse("unix:" + options.listenDir() + "/" + record.id() + ".sock", "listen");
        int mode = request.socketMode() >= 0 ? request.socketMode() : options.socketMode();
        String owner = request.socketOwner() != null ? request.socketOwner() : options.socketOwner();
        // One server per event loop, up to the channels the hypervisor opens.
        int loops = Math.max(1, Math.min(request.channels() > 0 ? request.channels() : options.maxChannels(),
                2 * Runtime.getRuntime().availableProcessors()));
        return LocalListener.open(vertx, where, mode, owner, loops, this::accepted).map(l -> {
            listener = l;
            record.update(s -> s.withListen(l.address().toString()));
            idleTimer = vertx.setTimer(options.idleTimeoutMillis(), id -> {
                if (record.status().phase() == RelayPhase.LISTENING) {
                    fail("the hypervisor did not connect to " + l.address() + " within "
                            + options.idleTimeoutMillis() + " ms");
                }
            });
            return l.address();
        });
    }

    /**
     * A connection of the hypervisor: its first bytes say what it is, then it is paused until its channel reaches
     * the destination. The main channel (QEVM) opens first and gets index 0, then the others in the order they
     * came: QEMU 7.2's destination takes the first connection it accepts for its main channel, and connections
     * handed to several event loops reach this code in any order.
     */
    private void accepted(NetSocket socket) {
        DirectInput input = VertxInternals.directInput(socket, options.receiveBufferMax());
        Slot slot;
        synchronized (slots) {
            int limit = request.channels() > 0 ? request.channels() : options.maxChannels();
            if (ended || slots.size() >= limit) {
                socket.close();
                return;
            }
            slot = new Slot(socket, new ChannelTap(System::nanoTime));
            slots.add(slot);
        }
        context.runOnContext(v -> {
            if (record.status().phase() == RelayPhase.LISTENING) {
                enter(RelayPhase.RELAYING);
            }
        });
        Context own = vertx.getOrCreateContext();
        Buffer first = Buffer.buffer(16);
        boolean[] seen = {false};
        input.endHandler(v -> {
            if (!seen[0]) {
                seen[0] = true;
                input.handler(null);
                slot.input = new PrefixedReadStream(first, input, own);
                ordered(slot, "unknown");
            }
        });
        // QEMU writes its first bytes as it connects; a peer that waits to be spoken to is taken as it came.
        long peek = vertx.setTimer(PEEK_MILLIS, id -> {
            if (!seen[0]) {
                seen[0] = true;
                input.pause();
                input.handler(null);
                input.endHandler(null);
                slot.input = new PrefixedReadStream(first, input, own);
                ordered(slot, "unknown");
            }
        });
        input.handler(bytes -> {
            first.appendBuffer(bytes);
            if (first.length() < 4 || seen[0]) {
                return;
            }
            seen[0] = true;
            vertx.cancelTimer(peek);
            input.pause();
            input.handler(null);
            input.endHandler(null);
            slot.input = new PrefixedReadStream(first, input, own);
            int magic = first.getInt(0);
            ordered(slot, magic == QemuFormat.QEMU_VM_FILE_MAGIC ? "main"
                    : magic == QemuFormat.MULTIFD_MAGIC ? "multifd" : "unknown");
        });
    }

    /** Gives the channel its index (the main channel 0) and opens it; multifd channels wait for the main one. */
    private void ordered(Slot slot, String kind) {
        switch (kind) {
            case "main" -> {
                synchronized (slots) {
                    if (mainTaken) {
                        slot.socket.close();
                        failFromChannel("the hypervisor opened a second main channel (QEVM)");
                        return;
                    }
                    mainTaken = true;
                    slot.index = 0;
                }
                open(slot, mainOpened);
            }
            case "multifd" -> mainOpened.future().onSuccess(v -> {
                synchronized (slots) {
                    slot.index = nextIndex++;
                }
                open(slot, null);
            });
            default -> {
                // Not QEMU's format (its own TLS, another hypervisor): the order they came in.
                synchronized (slots) {
                    if (!mainTaken) {
                        mainTaken = true;
                        slot.index = 0;
                    } else {
                        slot.index = nextIndex++;
                    }
                }
                open(slot, slot.index == 0 ? mainOpened : null);
            }
        }
    }

    /** Opens the channel to the destination; {@code opened} completes once it did. */
    private void open(Slot slot, Promise<Void> opened) {
        NetSocket socket = slot.socket;
        record.update(s -> s.withChannel(new RelayStatus.Channel(slot.index, "pending", "opening", 0, 0, null, null)));
        long openTimer = vertx.setTimer(options.openTimeoutMillis(), id -> {
            if (slot.channel == null || slot.channel.state().equals("opening")) {
                failFromChannel("channel " + slot.index + " did not reach " + request.target() + " through "
                        + request.destination() + " within " + options.openTimeoutMillis() + " ms");
            }
        });
        // Connected from the socket's context: the channel's two sockets share one event loop.
        connector.connect(request.destination()).onComplete(ar -> {
            if (ar.failed()) {
                vertx.cancelTimer(openTimer);
                socket.close();
                failFromChannel("channel " + slot.index + " could not connect to " + request.destination() + ": "
                        + ar.cause().getMessage());
                return;
            }
            RelayChannel channel = new RelayChannel(vertx, slot.index, ar.result(), limits, (type, body) -> {
                vertx.cancelTimer(openTimer);
                if (type == FrameType.RELAY_OPENED) {
                    slot.channel.attach(socket, slot.input, options.writeQueueMaxSize(), slot.tap);
                    if (opened != null) {
                        opened.tryComplete();
                    }
                    refresh();
                } else if (type == FrameType.REFUSE) {
                    socket.close();
                    slot.channel.fail("the destination refused channel " + slot.index + ": "
                            + body.getString("reason", "no reason given"), true);
                } else {
                    throw new io.vfioproxy.stream.ProtocolException(type + " from the destination");
                }
            }, new Listener());
            synchronized (slots) {
                slot.channel = channel;
            }
            if (ended) {
                socket.close();
                channel.fail("the relay ended", false);
                return;
            }
            channel.start();
            channel.send(FrameType.RELAY_OPEN, openBody(slot.index));
        });
    }

    private final class Listener implements RelayChannel.Listener {
        @Override
        public void ended(RelayChannel channel) {
            context.runOnContext(v -> channelEnded(channel));
        }

        @Override
        public void failed(RelayChannel channel, String reason, boolean fromPeer) {
            failFromChannel(reason);
        }

        /**
         * Every connection accepted so far: each becomes a channel or fails the relay. By the time the hypervisor
         * ends a channel, it has opened all it will (QEMU connects its multifd channels before it sends on them).
         */
        @Override
        public int channels() {
            synchronized (slots) {
                return slots.size();
            }
        }
    }

    private void channelEnded(RelayChannel channel) {
        if (isEnded()) {
            return;
        }
        refresh();
        if (channel.index() == 0 && listener != null) {
            // The main channel is the migration: once it ended, no further connection belongs to it.
            listener.close(vertx);
        }
        boolean all;
        Slot first;
        synchronized (slots) {
            first = slots.stream().filter(s -> s.index == 0).findFirst().orElse(null);
            all = first != null && slots.stream().allMatch(s -> s.channel != null && s.channel.state().equals("ended"));
        }
        if (!all) {
            return;
        }
        QemuStreamObserver main = first.tap.main();
        String truncated = main == null ? null : main.endNote();
        if (main != null && main.report().note() == null && truncated != null) {
            fail("the source hypervisor closed its main channel before the end of its stream (" + truncated
                    + "): its migration failed or was cancelled");
            return;
        }
        end(RelayPhase.COMPLETED, null);
    }

    private void failFromChannel(String reason) {
        context.runOnContext(v -> fail(reason));
    }

    /** Cancels the relay: every channel closes now, the destination hears why. */
    void cancel(String reason) {
        context.runOnContext(v -> {
            if (!ended) {
                closeAll(reason);
                end(RelayPhase.CANCELLED, reason);
            }
        });
    }

    /** Fails the relay (the agent stops): every channel closes now, the destination hears why. */
    void abort(String reason) {
        context.runOnContext(v -> fail(reason));
    }

    private void fail(String reason) {
        if (ended) {
            return;
        }
        closeAll(reason);
        end(RelayPhase.FAILED, reason);
    }

    private void closeAll(String reason) {
        List<Slot> all;
        synchronized (slots) {
            ended = true;
            all = List.copyOf(slots);
        }
        for (Slot s : all) {
            if (s.channel != null) {
                s.channel.fail(reason, false);
            }
            s.socket.close();
        }
    }

    private void enter(RelayPhase next) {
        RelayStatus s = record.update(r -> r.withPhase(next));
        ending.changed(s, "phase");
    }

    private void end(RelayPhase outcome, String error) {
        synchronized (slots) {
            ended = true;
        }
        if (isEnded()) {
            return;
        }
        if (idleTimer >= 0) {
            vertx.cancelTimer(idleTimer);
        }
        refresh();
        Future<Void> closed = listener == null ? Future.succeededFuture() : listener.close(vertx);
        RelayStatus s = record.update(r -> r.end(outcome, error));
        ending.ended(s);
        closed.onComplete(v -> done.tryComplete());
    }

    /** The channels' figures into the record. */
    void refresh() {
        List<Slot> all;
        synchronized (slots) {
            all = List.copyOf(slots);
        }
        record.update(s -> {
            RelayStatus next = s;
            for (Slot slot : all) {
                if (slot.index < 0) {
                    continue;
                }
                RelayChannel c = slot.channel;
                MultifdObserver.Report multifd = slot.tap.multifd() == null ? null : slot.tap.multifd().report();
                String note = c != null && c.note() != null ? c.note() : multifd != null ? multifd.note() : null;
                next = next.withChannel(new RelayStatus.Channel(slot.index, slot.tap.kind(),
                        c == null ? "opening" : c.state(), c == null ? 0 : c.toRemote(), c == null ? 0 : c.toLocal(),
                        multifd, note));
            }
            QemuStreamObserver main = all.stream().filter(x -> x.index == 0).map(x -> x.tap.main())
                    .filter(java.util.Objects::nonNull).findFirst().orElse(null);
            return main == null ? next : next.withStream(main.report());
        });
    }

    boolean isEnded() {
        return record.status().phase().isTerminal();
    }
}
