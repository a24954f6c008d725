package io.vfioproxy.agent;

import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Vertx;
import io.vertx.core.VertxOptions;
import io.vertx.micrometer.MicrometerMetricsFactory;
import io.vertx.micrometer.MicrometerMetricsOptions;
import java.util.UUID;

/**
 * A Vert.x instance whose net, HTTP and event-bus metrics go to a Prometheus registry that the agent's own meters
 * share, so one scrape shows both.
 *
 * @param vertx the instance
 * @param registry the registry, for {@link AgentVerticle} and the scrape endpoint
 */
public record AgentVertx(Vertx vertx, PrometheusMeterRegistry registry) {

    public static AgentVertx create() {
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
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
