package io.vfioproxy.relay;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetClient;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.vertx.DirectInput;
import io.vfioproxy.vertx.VertxInternals;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The destination side of one relay: connects each channel the source agent opens to the target, in the order the
 * source hypervisor opened them (QEMU 7.2 takes the first connection it accepts for its main channel), and relays.
 * It ends once every channel the source announced has ended; one failed channel fails them all.
 */
final class TargetRelay {

    private final Vertx vertx;
    private final RelayOptions options;
    private final NetClient client;
    private final RelayRecord record;
    private final RelayAddress target;
    private final RelayService.Ending ending;
    private final Map<Integer, RelayChannel> channels = new HashMap<>();
    /** Completes once channel N is connected to the target: channel N + 1 connects after it. */
    private final Map<Integer, Promise<Void>> connected = new HashMap<>();
    private final Promise<Void> done = Promise.promise();
    private boolean ended;

    TargetRelay(Vertx vertx, RelayOptions options, NetClient client, RelayRecord record, RelayAddress target,
            RelayService.Ending ending) {
        this.vertx = vertx;
        this.options = options;
        this.client = client;
        this.record = record;
        this.target = target;
        this.ending = ending;
    }

    RelayRecord record() {
        return record;
    }

    Future<Void> done() {
        return done.future();
    }

    private synchronized Promise<Void> connectedPromise(int index) {
        return connected.computeIfAbsent(index, i -> Promise.promise());
    }

    /** A channel the source opened: refused with the reason, or connected to the target and answered RELAY_OPENED. */
    void open(RelayChannel channel, int index, RelayAddress asked) {
        synchronized (this) {
            if (ended) {
                channel.refuse("relay " + record.id() + " has ended");
                return;
            }
            if (!asked.equals(target)) {
                channel.refuse("channel " + index + " names target " + asked + ", the relay's is " + target);
                return;
            }
            if (channels.containsKey(index)) {
                channel.refuse("relay " + record.id() + " already has a channel " + index);
                return;
            }
            channel.index(index);
            channels.put(index, channel);
        }
        record.update(s -> s.withChannel(new RelayStatus.Channel(index, "pending", "opening", 0, 0, null, null)));
        Future<Void> previous = index == 0 ? Future.succeededFuture() : connectedPromise(index - 1).future();
        long timer = vertx.setTimer(options.openTimeoutMillis(), id -> channel.refuse("channel " + index
                + ": channel " + (index - 1) + " did not connect first within " + options.openTimeoutMillis() + " ms"));
        previous.compose(v -> {
            vertx.cancelTimer(timer);
            return client.connect(target.socketAddress());
        }).onComplete(ar -> {
            if (ar.failed()) {
                channel.refuse("connecting channel " + index + " to " + target + " failed: "
                        + ar.cause().getMessage());
                return;
            }
            NetSocket socket = ar.result();
            DirectInput input = VertxInternals.directInput(socket, options.receiveBufferMax());
            input.pause();
            channel.attach(socket, input, options.writeQueueMaxSize(), null);
            channel.send(FrameType.RELAY_OPENED, new JsonObject().put("channel", index));
            connectedPromise(index).tryComplete();
            refresh();
        });
    }

    /** What the relay hears from its channels. */
    RelayChannel.Listener listener() {
        return new RelayChannel.Listener() {
            @Override
            public void ended(RelayChannel channel) {
                channelEnded();
            }

            @Override
            public void failed(RelayChannel channel, String reason, boolean fromPeer) {
                fail(reason);
            }
        };
    }

    /**
     * Completes the relay once every channel the source announced has ended here. The source says in each
     * RELAY_END how many it accepted: a channel it accepted last may open here after the others ended, and must
     * not find the relay over. One announced but missing after the open timeout fails the relay.
     */
    private void channelEnded() {
        refresh();
        int expected;
        int arrived;
        synchronized (this) {
            if (ended || !channels.containsKey(0)
                    || !channels.values().stream().allMatch(c -> c.state().equals("ended"))) {
                return;
            }
            expected = channels.values().stream().mapToInt(RelayChannel::peerChannels).max().orElse(-1);
            arrived = channels.size();
            if (arrived >= expected) {
                ended = true;
            }
        }
        if (arrived >= expected) {
            end(RelayPhase.COMPLETED, null);
            return;
        }
        vertx.setTimer(options.openTimeoutMillis(), id -> {
            synchronized (this) {
                if (ended || channels.size() > arrived) {
                    return;
                }
            }
            fail("the source announced " + expected + " channels, " + arrived + " arrived within "
                    + options.openTimeoutMillis() + " ms of the others' end");
        });
    }

    private void fail(String reason) {
        List<RelayChannel> all;
        synchronized (this) {
            if (ended) {
                return;
            }
            ended = true;
            all = new ArrayList<>(channels.values());
        }
        all.forEach(c -> c.fail(reason, false));
        end(RelayPhase.FAILED, reason);
    }

    /** Ends the relay because this agent stops. */
    void shutdown(String reason) {
        fail(reason);
    }

    private void end(RelayPhase outcome, String error) {
        refresh();
        RelayStatus s = record.update(r -> r.end(outcome, error));
        ending.ended(s);
        done.tryComplete();
    }

    void refresh() {
        List<RelayChannel> all;
        synchronized (this) {
            all = new ArrayList<>(channels.values());
        }
        record.update(s -> {
            RelayStatus next = s;
            for (RelayChannel c : all) {
                // At the destination, "to destination" is what it wrote to the target.
                next = next.withChannel(new RelayStatus.Channel(c.index(), "relayed", c.state(), c.toLocal(),
                        c.toRemote(), null, c.note()));
            }
            return next;
        });
    }

    boolean isEnded() {
        return record.status().phase().isTerminal();
    }
}
