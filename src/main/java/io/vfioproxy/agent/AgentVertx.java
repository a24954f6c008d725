package io.vfioproxy.agent;

import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.micrometer.MicrometerMetricsFactory;
import io.vertx.micrometer.MicrometerMetricsOptions;
import java.util.UUID;

/**
 * A Vert.x instance whose net, HTTP and event-bus metrics go to a Prometheus registry that the agent's own meters
 * and the JVM's memory and thread meters share, so one scrape shows all.
 *
 * @param vertx the instance
 * @param registry the registry, for {@link AgentVerticle} and the scrape endpoint
 */
public record AgentVertx(Vertx vertx, PrometheusMeterRegistry registry) {

    public static AgentVertx create() {
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        // The JVM's memory (heap pools, direct and mapped buffers) and threads: what an operator watches for a
        // leak, and what the chaos harness compares before and after.
        new JvmMemoryMetrics().bindTo(registry);
        new JvmThreadMetrics().bindTo(registry);
        Vertx vertx = Vertx.builder()
                .with(new VertxOptions().setMetricsOptions(new MicrometerMetricsOptions()
                        .setEnabled(true)
                        // A name of its own: Vert.x keys registries by name, and tests run several instances.
                        .setRegistryName("vmp-" + UUID.randomUUID())))
                .withMetrics(new MicrometerMetricsFactory(registry))
                .build();
        return new AgentVertx(vertx, registry);
    }
}
