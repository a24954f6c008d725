package io.vfioproxy.cluster;

import com.hazelcast.cluster.MembershipEvent;
import com.hazelcast.cluster.MembershipListener;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.eventbus.DeliveryOptions;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.core.spi.cluster.NodeInfo;
import io.vertx.spi.cluster.hazelcast.HazelcastClusterManager;
import io.vfioproxy.api.Events;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BiFunction;
import java.util.function.IntConsumer;

/**
 * What one agent knows of the cluster: the agents in it (each Hazelcast member's node metadata names its agent),
 * those that left, and what their leaving did. Membership comes from Hazelcast's own listener, beside the one
 * Vert.x keeps for its event bus; every change is published on {@link Events#CLUSTER} by this agent, so each
 * agent says what it saw.
 *
 * <p>An agent that leaves (stopped, killed, cut off) is published as {@code left}, with the migrations this agent
 * had with it: those still running fail now (their peer is gone), and those that failed shortly before are named
 * too (a killed peer's connection usually tells first).
 */
public final class ClusterMembership {

    private static final System.Logger LOG = System.getLogger("io.vfioproxy.cluster");
    /** How long a new member may take to publish its node metadata (Vert.x writes it after the join). */
    private static final long LEARN_MILLIS = 15_000;
    private static final long LEARN_RETRY_MILLIS = 200;
    /** How long the others wait for a member's own description in {@link #view()}. */
    private static final long DESCRIBE_MILLIS = 3000;

    private final Vertx vertx;
    private final String agent;
    private final ClusterOptions options;
    private final HazelcastClusterManager manager;
    private final BiFunction<String, String, List<String>> peerLeft;
    private final IntConsumer seen;
    /** Vert.x node id of each member to the agent on it. */
    private final Map<String, String> agents = new ConcurrentHashMap<>();
    /** Agents that left, and when. */
    private final Map<String, Instant> gone = new ConcurrentHashMap<>();
    /** Members whose name is being learned (a join seen twice is learned once). */
    private final Set<String> learning = ConcurrentHashMap.newKeySet();
    private UUID listener;

    /**
     * @param peerLeft given the agent that left and why, ends this agent's migrations with it and names them
     * @param seen told how many agents this one knows, itself included, at each change
     */
    public ClusterMembership(Vertx vertx, String agent, ClusterOptions options, HazelcastClusterManager manager,
            BiFunction<String, String, List<String>> peerLeft, IntConsumer seen) {
        this.vertx = vertx;
        this.agent = agent;
        this.options = options;
        this.manager = manager;
        this.peerLeft = peerLeft;
        this.seen = seen;
    }

    /** The node metadata an agent's event bus carries: its name. */
    public static JsonObject metadata(String agent) {
        return new JsonObject().put("agent", agent);
    }

    /** Listens to membership and learns the members already there; says so when this agent is alone. */
    public Future<Void> start() {
        // Vert.x names a member by its own node id (a member attribute), not Hazelcast's member UUID, so each
        // change is read as the difference between the nodes Vert.x lists now and the agents known here.
        listener = manager.getHazelcastInstance().getCluster().addMembershipListener(new MembershipListener() {
            @Override
            public void memberAdded(MembershipEvent event) {
                vertx.runOnContext(v -> joined());
            }

            @Override
            public void memberRemoved(MembershipEvent event) {
                vertx.runOnContext(v -> departed());
            }
        });
        List<Future<String>> known = new ArrayList<>();
        for (String node : manager.getNodes()) {
            known.add(learn(node, System.currentTimeMillis() + LEARN_MILLIS).otherwiseEmpty());
        }
        return Future.join(known).onComplete(ar -> {
            if (manager.getNodes().size() == 1) {
                LOG.log(System.Logger.Level.WARNING, "agent " + agent + " is alone in cluster '" + options.name()
                        + "': none of " + (options.kubernetes().enabled() ? "the members Kubernetes discovery found"
                        : "its members " + options.members()) + " answered on port " + options.port()
                        + "; it listens for them to join");
            } else {
                LOG.log(System.Logger.Level.INFO, "agent " + agent + " joined cluster '" + options.name() + "' with "
                        + new TreeMap<>(agents).values());
            }
        }).mapEmpty();
    }

    /** Stops listening (the event bus leaves the cluster when Vert.x closes). */
    public void stop() {
        if (listener != null && manager.getHazelcastInstance().getLifecycleService().isRunning()) {
            manager.getHazelcastInstance().getCluster().removeMembershipListener(listener);
        }
    }

    /** The agent on member {@code node}, once its node metadata is there (retried until {@code deadline}). */
    private Future<String> learn(String node, long deadline) {
        Promise<NodeInfo> info = Promise.promise();
        manager.getNodeInfo(node, info);
        return info.future().transform(ar -> {
            String name = ar.succeeded() && ar.result() != null ? ar.result().metadata().getString("agent") : null;
            if (name != null) {
                agents.put(node, name);
                seen.accept(agents.size());
                return Future.succeededFuture(name);
            }
            if (System.currentTimeMillis() > deadline || !manager.getNodes().contains(node)) {
                return Future.failedFuture("member " + node + " published no agent name");
            }
            Promise<String> later = Promise.promise();
            vertx.setTimer(LEARN_RETRY_MILLIS, id -> learn(node, deadline).onComplete(later));
            return later.future();
        });
    }

    private void joined() {
        for (String node : manager.getNodes()) {
            if (!agents.containsKey(node) && learning.add(node)) {
                learn(node, System.currentTimeMillis() + LEARN_MILLIS).onComplete(ar -> {
                    learning.remove(node);
                    if (ar.succeeded()) {
                        gone.remove(ar.result());
                        publish(new JsonObject().put("event", "joined").put("member", ar.result()));
                    }
                });
            }
        }
    }

    private void departed() {
        List<String> now = manager.getNodes();
        for (String node : List.copyOf(agents.keySet())) {
            if (!now.contains(node)) {
                left(node);
            }
        }
    }

    private void left(String node) {
        String name = agents.remove(node);
        seen.accept(agents.size());
        String who = name != null ? name : "member " + node;
        gone.put(who, Instant.now());
        List<String> interrupted = name == null ? List.of()
                : peerLeft.apply(name, "agent " + name + " left the cluster");
        LOG.log(System.Logger.Level.WARNING, "agent " + agent + ": agent " + who + " left the cluster"
                + (interrupted.isEmpty() ? "" : "; its migrations with this agent were interrupted: " + interrupted));
        publish(new JsonObject().put("event", "left").put("member", who)
                .put("interrupted", new JsonArray(interrupted)));
    }

    private void publish(JsonObject event) {
        vertx.eventBus().publish(Events.CLUSTER, event.put("agent", agent).put("timestamp", Instant.now().toString()));
    }

    /**
     * Every agent of the cluster with its address, devices and readiness (each asked over the event bus), and
     * those that left: {@code {"clustered": true, "cluster", "agents": [...]}}.
     */
    public Future<JsonObject> view() {
        List<Future<JsonObject>> all = new ArrayList<>();
        for (String node : manager.getNodes()) {
            String name = agents.get(node);
            if (name == null) {
                all.add(Future.succeededFuture(new JsonObject().put("node", node).put("state", "joining")));
                continue;
            }
            Promise<NodeInfo> info = Promise.promise();
            manager.getNodeInfo(node, info);
            all.add(info.future().compose(i -> vertx.eventBus().<JsonObject>request(Events.command(name, "agent"),
                    new JsonObject(), new DeliveryOptions().setSendTimeout(DESCRIBE_MILLIS)).map(reply -> {
                        JsonObject about = reply.body().copy().put("node", node).put("host", i.host())
                                .put("state", "up");
                        if (about.getInteger("streamPort", 0) > 0) {
                            about.put("stream", i.host() + ":" + about.getInteger("streamPort"));
                        }
                        return about;
                    })).otherwise(e -> new JsonObject().put("agent", name).put("node", node)
                            .put("state", "unreachable").put("error", String.valueOf(e.getMessage()))));
        }
        return Future.join(all).map(v -> {
            JsonArray list = new JsonArray();
            all.forEach(f -> list.add(f.result()));
            new TreeMap<>(gone).forEach((name, at) -> list.add(new JsonObject().put("agent", name)
                    .put("state", "gone").put("leftAt", at.toString())));
            return new JsonObject().put("clustered", true).put("cluster", options.name()).put("agent", agent)
                    .put("agents", list);
        });
    }
}
