package io.vfioproxy.relay;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * One relay as its agent sees it at one moment; immutable, replaced as the relay goes on.
 *
 * @param id the relay's id, the same on both agents
 * @param role "source" (listens for the hypervisor) or "destination" (connects to the target)
 * @param agent this agent
 * @param peer the other agent: the destination's endpoint, or the source agent's name
 * @param target the destination hypervisor's address
 * @param listen the source hypervisor's address (source only)
 * @param phase where it is
 * @param startedAt when it began
 * @param startNanos when it began, monotonic
 * @param durationNanos from start to end, once ended; else -1
 * @param error why it failed, or null
 * @param channels each channel, by index (0 is the first connection, QEMU's main channel)
 * @param stream what the observer saw in the main channel (source only), or null
 */
public record RelayStatus(String id, String role, String agent, String peer, String target, String listen,
        RelayPhase phase, Instant startedAt, long startNanos, long durationNanos, String error,
        List<Channel> channels, QemuStreamReport stream) {

    /**
     * One channel: one connection of the hypervisor, carried over its own agent connection.
     *
     * @param index its order of connection (0: the main channel)
     * @param kind "main" or "multifd" by its first bytes, "unknown" where they are neither, "pending" before any
     * @param state "opening", "open", "ended" (both directions closed cleanly) or "failed"
     * @param toDestination bytes relayed from the source hypervisor to the destination hypervisor
     * @param toSource bytes relayed back (QEMU's return path)
     * @param multifd what the multifd observer saw (source, multifd channels only), or null
     * @param note why it failed or what could not be parsed, or null
     */
    public record Channel(int index, String kind, String state, long toDestination, long toSource,
            MultifdObserver.Report multifd, String note) {
        JsonObject toJson() {
            JsonObject json = new JsonObject().put("index", index).put("kind", kind).put("state", state)
                    .put("toDestination", toDestination).put("toSource", toSource);
            if (multifd != null) {
                json.put("multifd", multifd.toJson());
            }
            if (note != null) {
                json.put("note", note);
            }
            return json;
        }
    }

    public RelayStatus {
        channels = List.copyOf(channels);
    }

    static RelayStatus begin(String id, String role, String agent, String peer, String target, String listen,
            RelayPhase phase) {
        return new RelayStatus(id, role, agent, peer, target, listen, phase, Instant.now(), System.nanoTime(), -1,
                null, List.of(), null);
    }

    RelayStatus withPhase(RelayPhase next) {
        return new RelayStatus(id, role, agent, peer, target, listen, phase.to(next), startedAt, startNanos,
                next.isTerminal() ? System.nanoTime() - startNanos : durationNanos, error, channels, stream);
    }

    RelayStatus withListen(String address) {
        return new RelayStatus(id, role, agent, peer, target, address, phase, startedAt, startNanos, durationNanos,
                error, channels, stream);
    }

    RelayStatus withPeer(String who) {
        return new RelayStatus(id, role, agent, who, target, listen, phase, startedAt, startNanos, durationNanos,
                error, channels, stream);
    }

    RelayStatus withChannel(Channel channel) {
        List<Channel> all = new ArrayList<>(channels);
        while (all.size() <= channel.index()) {
            all.add(new Channel(all.size(), "pending", "opening", 0, 0, null, null));
        }
        all.set(channel.index(), channel);
        return new RelayStatus(id, role, agent, peer, target, listen, phase, startedAt, startNanos, durationNanos,
                error, all, stream);
    }

    RelayStatus withStream(QemuStreamReport report) {
        return new RelayStatus(id, role, agent, peer, target, listen, phase, startedAt, startNanos, durationNanos,
                error, channels, report);
    }

    RelayStatus end(RelayPhase outcome, String why) {
        return new RelayStatus(id, role, agent, peer, target, listen, phase.to(outcome), startedAt, startNanos,
                System.nanoTime() - startNanos, why, channels, stream);
    }

    /** Bytes relayed to the destination over every channel. */
    public long toDestination() {
        return channels.stream().mapToLong(Channel::toDestination).sum();
    }

    /** Bytes relayed back over every channel. */
    public long toSource() {
        return channels.stream().mapToLong(Channel::toSource).sum();
    }

    /** RAM pages sent whole, over the main channel and every multifd channel. */
    public long normalPages() {
        long multifd = channels.stream().filter(c -> c.multifd() != null).mapToLong(c -> c.multifd().normalPages())
                .sum();
        return multifd + (stream == null ? 0 : stream.normalPages());
    }

    /** RAM pages sent as zero pages. */
    public long zeroPages() {
        long multifd = channels.stream().filter(c -> c.multifd() != null).mapToLong(c -> c.multifd().zeroPages())
                .sum();
        return multifd + (stream == null ? 0 : stream.zeroPages());
    }

    /** Passes over the guest's memory, the most any channel saw. */
    public long passes() {
        long multifd = channels.stream().filter(c -> c.multifd() != null).mapToLong(c -> c.multifd().passes())
                .max().orElse(0);
        return Math.max(multifd, stream == null ? 0 : stream.passes());
    }

    public JsonObject toJson() {
        double seconds = (durationNanos >= 0 ? durationNanos : System.nanoTime() - startNanos) / 1e9;
        JsonObject json = new JsonObject()
                .put("id", id).put("role", role).put("agent", agent).put("peer", peer).put("target", target)
                .put("phase", phase.name()).put("startedAt", startedAt.toString())
                .put("toDestination", toDestination()).put("toSource", toSource())
                .put("seconds", seconds)
                .put("throughputBytesPerSecond", seconds > 0 ? (long) (toDestination() / seconds) : 0);
        if (listen != null) {
            json.put("listen", listen);
        }
        if (error != null) {
            json.put("error", error);
        }
        JsonArray list = new JsonArray();
        channels.forEach(c -> list.add(c.toJson()));
        json.put("channels", list);
        if (stream != null) {
            JsonObject qemu = stream.toJson();
            qemu.getJsonObject("ram").put("normalPages", normalPages()).put("zeroPages", zeroPages())
                    .put("passes", passes());
            json.put("qemu", qemu);
        }
        return json;
    }
}
