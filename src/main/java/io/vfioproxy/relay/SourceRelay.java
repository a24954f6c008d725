package io.vfioproxy.relay;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
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

    /** One accepted connection of the hypervisor and its channel. */
    private static final class Slot {
        final int index;
        final NetSocket socket;
        final DirectInput input;
        final ChannelTap tap;
        RelayChannel channel;

        Slot(int index, NetSocket socket, DirectInput input, ChannelTap tap) {
            this.index = index;
            this.socket = socket;
            this.input = input;
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
        return LocalListener.open(vertx, where, mode, owner, this::accepted).map(l -> {
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

    /** A connection of the hypervisor: paused until its channel reaches the destination. */
    private void accepted(NetSocket socket) {
        DirectInput input = VertxInternals.directInput(socket, options.receiveBufferMax());
        input.pause();
        Slot slot;
        synchronized (slots) {
            int limit = request.channels() > 0 ? request.channels() : options.maxChannels();
            if (ended || slots.size() >= limit) {
                socket.close();
                return;
            }
            slot = new Slot(slots.size(), socket, input, new ChannelTap(System::nanoTime));
            slots.add(slot);
        }
        context.runOnContext(v -> {
            if (record.status().phase() == RelayPhase.LISTENING) {
                enter(RelayPhase.RELAYING);
            }
        });
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
                    slot.channel.attach(socket, input, options.writeQueueMaxSize(), slot.tap);
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
        synchronized (slots) {
            all = slots.get(0).channel != null && slots.get(0).channel.state().equals("ended")
                    && slots.stream().allMatch(s -> s.channel != null && s.channel.state().equals("ended"));
        }
        if (!all) {
            return;
        }
        QemuStreamObserver main = slots.get(0).tap.main();
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
                RelayChannel c = slot.channel;
                MultifdObserver.Report multifd = slot.tap.multifd() == null ? null : slot.tap.multifd().report();
                String note = c != null && c.note() != null ? c.note() : multifd != null ? multifd.note() : null;
                next = next.withChannel(new RelayStatus.Channel(slot.index, slot.tap.kind(),
                        c == null ? "opening" : c.state(), c == null ? 0 : c.toRemote(), c == null ? 0 : c.toLocal(),
                        multifd, note));
            }
            QemuStreamObserver main = all.isEmpty() ? null : all.get(0).tap.main();
            return main == null ? next : next.withStream(main.report());
        });
    }

    boolean isEnded() {
        return record.status().phase().isTerminal();
    }
}
