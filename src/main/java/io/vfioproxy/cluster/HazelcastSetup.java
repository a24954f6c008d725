package io.vfioproxy.cluster;

import com.hazelcast.config.Config;
import com.hazelcast.config.JoinConfig;
import com.hazelcast.config.KubernetesConfig;
import com.hazelcast.config.NetworkConfig;
import io.vertx.spi.cluster.hazelcast.ConfigUtil;
import io.vertx.spi.cluster.hazelcast.HazelcastClusterManager;

/**
 * The Hazelcast member an agent runs for its clustered event bus: Vert.x's own maps (its default cluster
 * configuration), then the join this agent is configured for. Multicast and auto-detection are off: an agent
 * joins only the members it is told of, or those Kubernetes discovery finds.
 */
public final class HazelcastSetup {

    private HazelcastSetup() {
    }

    /** The configuration of this agent's Hazelcast member. */
    public static Config config(ClusterOptions o) {
        Config c = ConfigUtil.loadConfig();
        c.setClusterName(o.name());
        c.setProperty("hazelcast.logging.type", "jdk");
        c.setProperty("hazelcast.phone.home.enabled", "false");
        // Vert.x leaves the cluster when it closes; Hazelcast's own hook would leave first, under its feet.
        c.setProperty("hazelcast.shutdownhook.enabled", "false");
        // A member killed without a word is taken as gone after this long (Hazelcast's default is 60 s).
        c.setProperty("hazelcast.heartbeat.interval.seconds", "1");
        c.setProperty("hazelcast.max.no.heartbeat.seconds", Integer.toString(o.failureSeconds()));
        NetworkConfig network = c.getNetworkConfig();
        network.setPort(o.port()).setPortAutoIncrement(false);
        if (!o.host().isEmpty()) {
            c.setProperty("hazelcast.socket.bind.any", "false");
            network.getInterfaces().setEnabled(true).addInterface(o.host());
            network.setPublicAddress(o.host() + ":" + o.port());
        }
        JoinConfig join = network.getJoin();
        join.getMulticastConfig().setEnabled(false);
        join.getAutoDetectionConfig().setEnabled(false);
        if (o.kubernetes().enabled()) {
            KubernetesConfig k = join.getKubernetesConfig().setEnabled(true);
            if (!o.kubernetes().serviceDns().isEmpty()) {
                k.setProperty("service-dns", o.kubernetes().serviceDns());
            } else {
                k.setProperty("service-name", o.kubernetes().serviceName());
                if (!o.kubernetes().namespace().isEmpty()) {
                    k.setProperty("namespace", o.kubernetes().namespace());
                }
            }
        } else {
            join.getTcpIpConfig().setEnabled(true).setMembers(o.members());
        }
        return c;
    }

    /** A cluster manager over a member configured so. */
    public static HazelcastClusterManager clusterManager(ClusterOptions o) {
        return new HazelcastClusterManager(config(o));
    }
}
