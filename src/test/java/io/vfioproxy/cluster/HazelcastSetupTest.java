package io.vfioproxy.cluster;

import static org.assertj.core.api.Assertions.assertThat;

import com.hazelcast.config.Config;
import com.hazelcast.config.JoinConfig;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import org.junit.jupiter.api.Test;

/** The Hazelcast member each way of finding agents configures: only the members it is told of, never a guess. */
class HazelcastSetupTest {

    private static Config config(JsonObject cluster) {
        return HazelcastSetup.config(ClusterOptions.fromJson(cluster.put("enabled", true)));
    }

    @Test
    void tcpIpMembersOnlyWithMulticastAndAutoDetectionOff() {
        Config c = config(new JsonObject().put("host", "127.0.0.1").put("port", 5801).put("failureSeconds", 5)
                .put("members", new JsonArray().add("127.0.0.1:5801").add("127.0.0.1:5802")));
        JoinConfig join = c.getNetworkConfig().getJoin();
        assertThat(join.getTcpIpConfig().isEnabled()).isTrue();
        assertThat(join.getTcpIpConfig().getMembers()).containsExactly("127.0.0.1:5801", "127.0.0.1:5802");
        assertThat(join.getMulticastConfig().isEnabled()).isFalse();
        assertThat(join.getAutoDetectionConfig().isEnabled()).isFalse();
        assertThat(join.getKubernetesConfig().isEnabled()).isFalse();
        assertThat(c.getNetworkConfig().getPort()).isEqualTo(5801);
        assertThat(c.getNetworkConfig().isPortAutoIncrement()).as("a taken port is an error, not another port")
                .isFalse();
        assertThat(c.getNetworkConfig().getInterfaces().getInterfaces()).containsExactly("127.0.0.1");
        assertThat(c.getNetworkConfig().getPublicAddress()).isEqualTo("127.0.0.1:5801");
        assertThat(c.getProperty("hazelcast.max.no.heartbeat.seconds")).isEqualTo("5");
        assertThat(c.getProperty("hazelcast.phone.home.enabled")).isEqualTo("false");
        assertThat(c.getClusterName()).isEqualTo("vfio-migration-proxy");
    }

    @Test
    void kubernetesDiscoveryByTheHeadlessServicesDns() {
        Config c = config(new JsonObject().put("kubernetes", new JsonObject().put("enabled", true)
                .put("serviceDns", "vfio-migration-proxy.vfio-migration-proxy.svc.cluster.local")));
        JoinConfig join = c.getNetworkConfig().getJoin();
        assertThat(join.getKubernetesConfig().isEnabled()).isTrue();
        assertThat(join.getKubernetesConfig().getProperty("service-dns"))
                .isEqualTo("vfio-migration-proxy.vfio-migration-proxy.svc.cluster.local");
        assertThat(join.getKubernetesConfig().getProperty("service-name")).isNull();
        assertThat(join.getTcpIpConfig().isEnabled()).isFalse();
        assertThat(join.getMulticastConfig().isEnabled()).isFalse();
        assertThat(join.getAutoDetectionConfig().isEnabled()).isFalse();
    }

    @Test
    void kubernetesDiscoveryThroughTheApi() {
        Config c = config(new JsonObject().put("kubernetes", new JsonObject().put("enabled", true)
                .put("serviceName", "vfio-migration-proxy").put("namespace", "vfio-migration-proxy")));
        JoinConfig join = c.getNetworkConfig().getJoin();
        assertThat(join.getKubernetesConfig().getProperty("service-name")).isEqualTo("vfio-migration-proxy");
        assertThat(join.getKubernetesConfig().getProperty("namespace")).isEqualTo("vfio-migration-proxy");
        assertThat(join.getKubernetesConfig().getProperty("service-dns")).isNull();
    }
}
