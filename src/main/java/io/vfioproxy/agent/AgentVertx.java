package io.vfioproxy.agent;

import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.core.eventbus.EventBusOptions;
import io.vertx.core.http.ClientAuth;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.PemKeyCertOptions;
import io.vertx.core.net.PemTrustOptions;
import io.vertx.micrometer.MicrometerMetricsFactory;
import io.vertx.micrometer.MicrometerMetricsOptions;
import io.vertx.spi.cluster.hazelcast.HazelcastClusterManager;
import io.vfioproxy.cluster.ClusterMembership;
import io.vfioproxy.cluster.ClusterOptions;
import io.vfioproxy.cluster.HazelcastSetup;
import io.vfioproxy.security.SecurityOptions;
import java.util.UUID;

/**
 * A Vert.x instance whose net, HTTP and event-bus metrics go to a Prometheus registry that the agent's own meters
 * and the JVM's memory and thread meters share, so one scrape shows all.
 *
 * <p>With {@code cluster.enabled}, the instance is clustered: its event bus spans the agents of the cluster
 * (Hazelcast membership, {@link HazelcastSetup}), and its own agent-to-agent connections use the agents' mutual TLS
 * when security is on.
 *
 * @param vertx the instance
 * @param registry the registry, for {@link AgentVerticle} and the scrape endpoint
 * @param cluster the cluster manager of a clustered instance, or null
 */
public record AgentVertx(Vertx vertx, PrometheusMeterRegistry registry, HazelcastClusterManager cluster) {

    /** A Vert.x of its own, not clustered (the demo, the bench, the tests). */
    public static AgentVertx create() {
        PrometheusMeterRegistry registry = newRegistry();
        return new AgentVertx(Vertx.builder().with(options()).withMetrics(new MicrometerMetricsFactory(registry))
                .build(), registry, null);
    }

    /**
     * The Vert.x for an agent configured with {@code config}: clustered when its {@code cluster} section says so.
     *
     * @return fails with the reason, naming the configuration key, when the cluster cannot be set up or joined
     */
    public static Future<AgentVertx> create(JsonObject config) {
        ClusterOptions cluster;
        SecurityOptions security;
        try {
            cluster = ClusterOptions.fromJson(config.getJsonObject("cluster"));
            security = SecurityOptions.fromJson(config.getJsonObject("security"));
        } catch (IllegalArgumentException e) {
            return Future.failedFuture(e);
        }
        if (!cluster.enabled()) {
            return Future.succeededFuture(create());
        }
        String agent = config.getJsonObject("agent", new JsonObject()).getString("name", "");
        EventBusOptions eventBus = new EventBusOptions().setPort(cluster.eventBusPort())
                .setClusterNodeMetadata(ClusterMembership.metadata(agent));
        if (!cluster.host().isEmpty()) {
            eventBus.setHost(cluster.host()).setClusterPublicHost(cluster.host());
        }
        if (security.secure()) {
            // The event bus's own connections between agents: the same certificates and CA as the streams.
            eventBus.setSsl(true).setClientAuth(ClientAuth.REQUIRED)
                    .setKeyCertOptions(new PemKeyCertOptions().setCertPath(security.certPath())
                            .setKeyPath(security.keyPath()))
                    .setTrustOptions(new PemTrustOptions().addCertPath(security.caPath()));
        }
        PrometheusMeterRegistry registry = newRegistry();
        HazelcastClusterManager manager = HazelcastSetup.clusterManager(cluster);
        return Vertx.builder().with(options().setEventBusOptions(eventBus))
                .withMetrics(new MicrometerMetricsFactory(registry)).withClusterManager(manager).buildClustered()
                .map(vertx -> new AgentVertx(vertx, registry, manager))
                .recover(e -> Future.failedFuture(new IllegalArgumentException("agent " + agent
                        + " could not join cluster '" + cluster.name() + "' (cluster.port " + cluster.port()
                        + (cluster.host().isEmpty() ? "" : ", cluster.host " + cluster.host()) + "): "
                        + e.getMessage(), e)));
    }

    private static PrometheusMeterRegistry newRegistry() {
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        // The JVM's memory (heap pools, direct and mapped buffers) and threads: what an operator watches for a
        // leak, and what the chaos harness compares before and after.
        new JvmMemoryMetrics().bindTo(registry);
        new JvmThreadMetrics().bindTo(registry);
        return registry;
    }

    private static VertxOptions options() {
        return new VertxOptions().setMetricsOptions(new MicrometerMetricsOptions()
                .setEnabled(true)
                // A name of its own: Vert.x keys registries by name, and tests run several instances.
                .setRegistryName("vmp-" + UUID.randomUUID()));
    }
}
