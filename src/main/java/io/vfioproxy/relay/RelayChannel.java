package io.vfioproxy.relay;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetSocket;
import io.vertx.core.streams.ReadStream;
import io.vertx.core.streams.WriteStream;
import io.vfioproxy.stream.FrameDecoder;
import io.vfioproxy.stream.FrameType;
import io.vfioproxy.stream.FrameWriter;
import io.vfioproxy.stream.Frames;
import io.vfioproxy.stream.Limits;
import io.vfioproxy.stream.ProtocolException;
import io.vfioproxy.stream.StreamConnection;
import io.vfioproxy.vertx.VertxInternals;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BiConsumer;
import java.util.function.Consumer;

/**
 * One channel of a relay: one connection of a hypervisor (the local socket) carried over one agent-to-agent
 * connection (the remote), both ways, each way a pipe with its own backpressure: a hypervisor is read only as fast
 * as the other end absorbs.
 *
 * <p>Local to remote, each read becomes one RELAY_DATA frame around the very buffer it was read into (no copy; the
 * observer, where there is one, looks at it on the way). Remote to local, a frame's bytes are held, without a copy,
 * until its CRC32C matched, then written: the hypervisor never sees a byte that did not arrive intact. So memory per
 * channel is one frame and the two sockets' write queues.
 *
 * <p>The local side's end is RELAY_END {@code {"bytes", "channels"}} to the peer, which ends its local socket once it wrote
 * them all; a channel whose two directions both ended so has ended cleanly. Anything else (a socket error, a
 * protocol error, the agent connection lost, a count that does not match, an ABORT) fails the channel: its sockets
 * close at once, and the peer is told why. Runs on the remote connection's context, which is also the local
 * socket's.
 */
final class RelayChannel {

    /** What the relay hears of a channel. */
    interface Listener {
        /** Both directions ended cleanly. */
        void ended(RelayChannel channel);

        /** The channel failed; {@code fromPeer} when the peer said so (its ABORT, or the connection lost). */
        void failed(RelayChannel channel, String reason, boolean fromPeer);

        /**
         * How many channels the relay has so far, said in this side's RELAY_END (the source, which accepts every
         * connection of the hypervisor, knows; the destination learns it so); -1 where this side cannot tell.
         */
        default int channels() {
            return -1;
        }
    }

    private final Vertx vertx;
    private final StreamConnection remote;
    private final Limits limits;
    private final FrameWriter writer;
    private final FrameDecoder decoder;
    private final Listener listener;
    private final BiConsumer<FrameType, JsonObject> handshake;
    private final List<ByteBuf> held = new ArrayList<>();
    private int heldBytes;
    private volatile int index;
    private NetSocket local;
    /** The local socket's output, full while its channel is not writable. */
    private WriteStream<Buffer> localOut;
    private Consumer<Buffer> tap;
    private volatile long toRemote;
    private volatile long toLocal;
    private boolean localEnded;
    private boolean remoteEnded;
    private volatile boolean done;
    private volatile String state = "opening";
    private volatile String note;
    /** The relay's channel count the peer's RELAY_END said, or -1. */
    private volatile int peerChannels = -1;

    /**
     * @param handshake gets the control frames of the opening (RELAY_OPEN, RELAY_OPENED, REFUSE) before
     *        {@link #attach}
     */
    RelayChannel(Vertx vertx, int index, StreamConnection remote, Limits limits,
            BiConsumer<FrameType, JsonObject> handshake, Listener listener) {
        this.vertx = vertx;
        this.index = index;
        this.remote = remote;
        this.limits = limits;
        this.handshake = handshake;
        this.listener = listener;
        this.writer = new FrameWriter(remote.output());
        this.decoder = new FrameDecoder(limits, new Decoded());
    }

    int index() {
        return index;
    }

    void index(int value) {
        index = value;
    }

    /** Bytes read from the local socket and sent on. */
    long toRemote() {
        return toRemote;
    }

    /** Bytes received and written to the local socket. */
    long toLocal() {
        return toLocal;
    }

    /** "opening", "open", "ended" or "failed". */
    String state() {
        return state;
    }

    String note() {
        return note;
    }

    /** How many channels the peer's RELAY_END said the relay has; -1 before it came, or where it did not say. */
    int peerChannels() {
        return peerChannels;
    }

    boolean isDone() {
        return done;
    }

    /** The agent connection's peer, for messages. */
    String peer() {
        return remote.peer();
    }

    /** Starts reading the remote connection. */
    void start() {
        remote.closeHandler(v -> {
            // Both ends said they ended: the peer may close before this side finished ending its socket.
            if (!done && !(localEnded && remoteEnded)) {
                remoteLost("");
            }
        });
        remote.input().pipe().endOnSuccess(false).endOnFailure(false).to(new RemoteSink()).onComplete(ar -> {
            if (!done && !(ar.succeeded() && localEnded && remoteEnded)) {
                // A reset (a peer killed with unread bytes) and an early end are the same loss to the user; the
                // reset's words go in the parentheses.
                remoteLost(ar.failed() ? "reading failed: " + ar.cause().getMessage() + "; " : "");
            }
        });
    }

    /** The agent connection ended before the channel did; {@code detail} (may be empty) says how. */
    private void remoteLost(String detail) {
        fail("the connection to " + remote.peer() + " was lost before the channel ended (" + detail
                + decoder.position() + " from it)", true);
    }

    Future<Void> send(FrameType type, JsonObject body) {
        return writer.control(type, 0, body);
    }

    /**
     * Joins the local socket, once the channel opened: relaying starts both ways. {@code input} is the socket's
     * input, made when it was accepted or connected (and paused until now); {@code observer}, where given, sees
     * every buffer read from the socket before it is sent on.
     */
    void attach(NetSocket socket, ReadStream<Buffer> input, int writeQueueMaxSize, Consumer<Buffer> observer) {
        if (done) {
            socket.close();
            return;
        }
        this.local = socket;
        this.tap = observer;
        state = "open";
        socket.setWriteQueueMaxSize(writeQueueMaxSize);
        this.localOut = VertxInternals.output(socket);
        input.pipe().endOnSuccess(false).endOnFailure(false).to(new FramingSink()).onComplete(ar -> {
            if (ar.failed() && ar.cause() instanceof RemoteWriteFailed lost) {
                // The pipe fails with its destination too: a peer killed mid-write resets the connection we write.
                remoteLost("writing failed: " + lost.getCause().getMessage() + "; ");
            } else if (ar.failed()) {
                fail("reading the hypervisor's socket failed: " + ar.cause().getMessage(), false);
            } else {
                localInputEnded();
            }
        });
    }

    /** The hypervisor closed its side (or this side closed it after the peer's end): say how much went. */
    private void localInputEnded() {
        if (done || localEnded) {
            return;
        }
        localEnded = true;
        JsonObject end = new JsonObject().put("bytes", toRemote);
        int channels = listener.channels();
        if (channels >= 0) {
            end.put("channels", channels);
        }
        writer.control(FrameType.RELAY_END, 0, end).onComplete(ar -> {
            if (ar.failed()) {
                fail("sending the end to " + remote.peer() + " failed: " + ar.cause().getMessage(), true);
            } else {
                endedIfBoth();
            }
        });
    }

    private void endedIfBoth() {
        if (localEnded && remoteEnded && !done) {
            done = true;
            state = "ended";
            remote.close();
            listener.ended(this);
        }
    }

    /** Fails the channel: both sockets close now; the peer hears why unless it told this side. */
    void fail(String reason, boolean fromPeer) {
        if (done) {
            return;
        }
        done = true;
        state = "failed";
        note = reason;
        releaseHeld();
        if (local != null) {
            local.close();
        }
        if (fromPeer) {
            remote.close();
        } else {
            writer.control(FrameType.ABORT, 0, new JsonObject().put("reason", reason));
            remote.lingerAndClose(vertx, 2000);
        }
        listener.failed(this, reason, fromPeer);
    }

    /** Refuses the opening with {@code reason} (destination) and closes. */
    void refuse(String reason) {
        if (done) {
            return;
        }
        done = true;
        state = "failed";
        note = reason;
        writer.control(FrameType.REFUSE, 0, new JsonObject().put("reason", reason));
        remote.lingerAndClose(vertx, 2000);
        listener.failed(this, reason, false);
    }

    private void releaseHeld() {
        held.forEach(ByteBuf::release);
        held.clear();
        heldBytes = 0;
    }

    /** Writes the frame whose CRC32C just matched. */
    private void writeHeld() {
        ByteBuf bytes = held.size() == 1 ? held.get(0) : Unpooled.wrappedBuffer(held.toArray(new ByteBuf[0]));
        int n = heldBytes;
        held.clear();
        heldBytes = 0;
        localOut.write(Frames.wrap(bytes)).onComplete(ar -> {
            bytes.release();
            if (ar.succeeded()) {
                toLocal += n;
            } else {
                fail("writing to the hypervisor's socket failed: " + ar.cause().getMessage(), false);
            }
        });
    }

    private final class Decoded implements FrameDecoder.Listener {
        @Override
        public void onControl(FrameType type, int channel, JsonObject body) {
            switch (type) {
                case RELAY_END -> {
                    if (local == null || remoteEnded) {
                        throw new ProtocolException("RELAY_END " + (local == null ? "before the channel opened"
                                : "twice"));
                    }
                    remoteEnded = true;
                    peerChannels = body.getInteger("channels", -1);
                    long announced = body.getLong("bytes", -1L);
                    localOut.end().onComplete(ar -> {
                        if (done) {
                            return;
                        }
                        if (ar.failed()) {
                            fail("ending the hypervisor's socket failed: " + ar.cause().getMessage(), false);
                        } else if (announced != toLocal) {
                            fail("the peer sent " + announced + " bytes, " + toLocal + " arrived", false);
                        } else {
                            endedIfBoth();
                        }
                    });
                }
                case ABORT -> fail(remote.peer() + " aborted the relay: " + body.getString("reason", "no reason"),
                        true);
                case RELAY_OPEN, RELAY_OPENED, REFUSE -> {
                    if (local != null) {
                        throw new ProtocolException(type + " on an open channel");
                    }
                    handshake.accept(type, body);
                }
                default -> throw new ProtocolException("unexpected " + type + " frame on a relay channel");
            }
        }

        @Override
        public void onRelayData(int channel, Buffer piece) {
            if (local == null || remoteEnded) {
                throw new ProtocolException("RELAY_DATA " + (local == null ? "before the channel opened"
                        : "after RELAY_END"));
            }
            held.add(VertxInternals.retainedSlice(piece));
            heldBytes += piece.length();
        }

        @Override
        public void onRelayDataEnd(int channel) {
            writeHeld();
        }

        @Override
        public void onMarker(int channel, io.vfioproxy.stream.VfioTag tag) {
            throw new ProtocolException("a SECTION frame on a relay channel");
        }

        @Override
        public void onConfig(int channel, Buffer blob) {
            throw new ProtocolException("a SECTION frame on a relay channel");
        }

        @Override
        public void onDataStart(int channel, long size) {
            throw new ProtocolException("a SECTION frame on a relay channel");
        }

        @Override
        public void onData(int channel, Buffer piece) {
            throw new ProtocolException("a SECTION frame on a relay channel");
        }

        @Override
        public void onDataEnd(int channel) {
            throw new ProtocolException("a SECTION frame on a relay channel");
        }
    }

    /** A write to the remote connection failed: the pipe from the hypervisor's socket reports it as its own. */
    private static final class RemoteWriteFailed extends RuntimeException {
        RemoteWriteFailed(Throwable cause) {
            super(cause.getMessage(), cause, false, false);
        }
    }

    /** Frames what the hypervisor wrote and sends it on, with the agent connection's backpressure. */
    private final class FramingSink implements WriteStream<Buffer> {
        @Override
        public WriteStream<Buffer> exceptionHandler(Handler<Throwable> handler) {
            return this;
        }

        @Override
        public Future<Void> write(Buffer data) {
            if (done) {
                return Future.failedFuture("the channel ended");
            }
            if (tap != null) {
                tap.accept(data);
            }
            int n = data.length();
            toRemote += n;
            Future<Void> last = null;
            for (int from = 0; from < n; from += limits.maxChunk()) {
                int to = Math.min(n, from + limits.maxChunk());
                last = writer.relayData(0, from == 0 && to == n ? data : data.slice(from, to));
            }
            return last.recover(e -> Future.failedFuture(new RemoteWriteFailed(e)));
        }

        @Override
        public Future<Void> end() {
            return Future.succeededFuture();
        }

        @Override
        public WriteStream<Buffer> setWriteQueueMaxSize(int maxSize) {
            return this;
        }

        @Override
        public boolean writeQueueFull() {
            return writer.writeQueueFull();
        }

        @Override
        public WriteStream<Buffer> drainHandler(Handler<Void> handler) {
            writer.drainHandler(handler);
            // The connection may live on another event loop and have drained between the pipe's check and this:
            // look again, or the pipe waits for a drain that already happened.
            if (handler != null && !writer.writeQueueFull()) {
                vertx.runOnContext(handler);
            }
            return this;
        }
    }

    /** Decodes what the peer sends; while the hypervisor's socket is full, the pipe stops reading the peer. */
    private final class RemoteSink implements WriteStream<Buffer> {
        @Override
        public WriteStream<Buffer> exceptionHandler(Handler<Throwable> handler) {
            return this;
        }

        @Override
        public Future<Void> write(Buffer data) {
            if (done) {
                return Future.succeededFuture();
            }
            try {
                decoder.feed(data);
            } catch (ProtocolException e) {
                fail("protocol error from " + remote.peer() + ": " + e.getMessage(), false);
            }
            return Future.succeededFuture();
        }

        @Override
        public Future<Void> end() {
            return Future.succeededFuture();
        }

        @Override
        public WriteStream<Buffer> setWriteQueueMaxSize(int maxSize) {
            return this;
        }

        @Override
        public boolean writeQueueFull() {
            return localOut != null && localOut.writeQueueFull();
        }

        @Override
        public WriteStream<Buffer> drainHandler(Handler<Void> handler) {
            if (localOut != null) {
                // It looks again itself: the hypervisor's socket may have drained, on its own event loop, meanwhile.
                localOut.drainHandler(handler);
            } else if (handler != null) {
                vertx.runOnContext(handler);
            }
            return this;
        }
    }
}
