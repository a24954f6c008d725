package io.vfioproxy.cluster;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.util.ArrayList;
import java.util.List;

/**
 * The {@code cluster} section of the configuration: whether the agents' event bus is clustered, and how members
 * find each other (TCP-IP members on one machine or a fixed set of hosts, or Hazelcast's Kubernetes discovery).
 *
 * @param enabled whether this agent joins a cluster at all (off in the demo)
 * @param name the Hazelcast cluster name: agents of one deployment share it
 * @param host the address this agent binds and advertises for membership and the event bus (the pod IP); empty
 *        for Hazelcast's choice
 * @param port the membership port (Hazelcast's, 5701)
 * @param members the TCP-IP members, {@code host:port} or {@code host}, when Kubernetes discovery is off
 * @param eventBusPort the port of the event bus's own agent-to-agent connections (0: any)
 * @param kubernetes Hazelcast's Kubernetes discovery
 * @param failureSeconds how long a member may miss heartbeats before the others take it as gone
 */
public record ClusterOptions(boolean enabled, String name, String host, int port, List<String> members,
        int eventBusPort, Kubernetes kubernetes, int failureSeconds) {

    /**
     * Hazelcast's Kubernetes discovery: by DNS through a headless Service ({@code serviceDns}, which needs no RBAC),
     * or else through the API (the endpoints of {@code serviceName} in {@code namespace}, which needs get on
     * endpoints and pods).
     */
    public record Kubernetes(boolean enabled, String serviceDns, String namespace, String serviceName) {
        static Kubernetes fromJson(JsonObject j) {
            return new Kubernetes(j.getBoolean("enabled", false), j.getString("serviceDns", ""),
                    j.getString("namespace", ""), j.getString("serviceName", ""));
        }
    }

    public ClusterOptions {
        members = List.copyOf(members);
    }

    /**
     * Reads the section.
     *
     * @throws IllegalArgumentException naming the key, for a cluster that could not form: no way to find members, a
     *         port out of range, a member that is not {@code host[:port]}
     */
    public static ClusterOptions fromJson(JsonObject json) {
        JsonObject j = json == null ? new JsonObject() : json;
        List<String> members = new ArrayList<>();
        for (Object m : j.getJsonArray("members", new JsonArray())) {
            String member = String.valueOf(m).strip();
            if (!member.matches("[^:\\s]+(:[0-9]{1,5})?")) {
                throw new IllegalArgumentException("cluster.members: '" + member + "' is not host or host:port");
            }
            members.add(member);
        }
        ClusterOptions o = new ClusterOptions(j.getBoolean("enabled", false), j.getString("name", "vfio-migration-proxy"),
                j.getString("host", ""), j.getInteger("port", 5701), members, j.getInteger("eventBusPort", 0),
                Kubernetes.fromJson(j.getJsonObject("kubernetes", new JsonObject())),
                j.getInteger("failureSeconds", 10));
        if (!o.enabled()) {
            return o;
        }
        if (o.port() < 1 || o.port() > 65535) {
            throw new IllegalArgumentException("cluster.port " + o.port() + " is not a port (1-65535)");
        }
        if (o.eventBusPort() < 0 || o.eventBusPort() > 65535) {
            throw new IllegalArgumentException("cluster.eventBusPort " + o.eventBusPort() + " is not a port (0-65535)");
        }
        if (o.failureSeconds() < 2) {
            throw new IllegalArgumentException("cluster.failureSeconds " + o.failureSeconds()
                    + " is below 2: members would leave on one late heartbeat");
        }
        if (!o.kubernetes().enabled() && o.members().isEmpty()) {
            throw new IllegalArgumentException("cluster.enabled is true but there is no way to find the other agents:"
                    + " give cluster.members (VMP_CLUSTER_MEMBERS=host:port,host:port) or enable"
                    + " cluster.kubernetes (VMP_CLUSTER_KUBERNETES_ENABLED=true)");
        }
        if (o.kubernetes().enabled() && o.kubernetes().serviceDns().isEmpty()
                && o.kubernetes().serviceName().isEmpty()) {
            throw new IllegalArgumentException("cluster.kubernetes is enabled with neither serviceDns (the headless"
                    + " Service's DNS name) nor serviceName (to ask the API for its endpoints)");
        }
        return o;
    }
}
