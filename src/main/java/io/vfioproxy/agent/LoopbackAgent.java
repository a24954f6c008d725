package io.vfioproxy.agent;

import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.stream.StreamEndpoint;

/**
 * An agent on loopback, built in code: the demo's, the bench's and the tests' one way to make an agent. It starts
 * from the shipped defaults (conf/agent.json) and puts the stream endpoint and the API on free loopback ports; the
 * devices are only those added here.
 */
public final class LoopbackAgent {

    /** The page size of simulated devices made by {@link #simulated}. */
    public static final int PAGE = 4096;

    private final JsonObject config;

    private LoopbackAgent(String name) {
        config = AgentConfig.defaults()
                .put("agent", new JsonObject().put("name", name))
                .put("devices", new JsonArray());
        section("stream").put("host", "127.0.0.1").put("port", 0);
        section("api").put("host", "127.0.0.1").put("port", 0);
        // No journal unless a test gives one (journal(dir)): loopback agents leave nothing on the node.
        section("migration").put("journalDir", "");
        // In the clear on loopback unless a test secures it (secure()): the demo and the bench say so.
        config.put("security", new JsonObject().put("insecure", true));
    }

    /** Mutual TLS, HTTPS and tokens from {@code credentials} (made for this agent's name). */
    public LoopbackAgent secure(io.vfioproxy.security.TrialCredentials credentials) {
        config.put("security", credentials.security(config.getJsonObject("agent").getString("name")));
        return this;
    }

    /** Keeps the journal of migrations under way in {@code dir}, as an agent on a node does. */
    public LoopbackAgent journal(java.nio.file.Path dir) {
        return set("migration", "journalDir", dir.toString());
    }

    /** An agent named {@code name}, with no device yet. */
    public static LoopbackAgent named(String name) {
        return new LoopbackAgent(name);
    }

    /**
     * A simulated device entry: {@code size} bytes of state in 4 KiB pages, every migration flag, contents drawn
     * from {@code seed}. Further keys (dirtyRate, faults, ...) can be put on the returned object.
     */
    public static JsonObject simulated(String name, long size, long seed) {
        return new JsonObject().put("name", name).put("backend", "simulated").put("size", Long.toString(size))
                .put("pageSize", PAGE).put("seed", seed).put("flags", "STOP_COPY,P2P,PRE_COPY");
    }

    /** Adds a device entry (the "devices" array of conf/agent.json). */
    public LoopbackAgent device(JsonObject entry) {
        config.getJsonArray("devices").add(entry);
        return this;
    }

    /** Sets {@code key} of {@code section} ("migration", "stream", ...). */
    public LoopbackAgent set(String section, String key, Object value) {
        section(section).put(key, value);
        return this;
    }

    /** Merges {@code values} into {@code section}. */
    public LoopbackAgent merge(String section, JsonObject values) {
        section(section).mergeIn(values, true);
        return this;
    }

    /** No HTTP API (the demo's and the bench's agents need none). */
    public LoopbackAgent withoutApi() {
        return set("api", "enabled", false);
    }

    private JsonObject section(String name) {
        JsonObject s = config.getJsonObject(name);
        if (s == null) {
            s = new JsonObject();
            config.put(name, s);
        }
        return s;
    }

    /** The configuration, as conf/agent.json would hold it. */
    public JsonObject config() {
        return config.copy();
    }

    /** Deploys the agent and waits until it serves; its meters go to a registry of its own. */
    public AgentVerticle start(Vertx vertx) {
        AgentVerticle agent = new AgentVerticle(config());
        vertx.deployVerticle(agent).await();
        return agent;
    }

    /** Deploys the agent with its meters in {@code registry} (one {@link AgentVertx} reports to). */
    public AgentVerticle start(Vertx vertx, PrometheusMeterRegistry registry) {
        AgentVerticle agent = new AgentVerticle(config(), registry);
        vertx.deployVerticle(agent).await();
        return agent;
    }

    /** Where {@code agent}'s TCP stream endpoint listens on loopback. */
    public static StreamEndpoint endpoint(AgentVerticle agent) {
        return new StreamEndpoint("127.0.0.1", agent.streamPort());
    }
}
