package io.vfioproxy.api;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.vfioproxy.device.DeviceController;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.migration.MigrationMetrics;
import io.vfioproxy.migration.MigrationStatus;
import io.vfioproxy.relay.RelayMetrics;
import io.vfioproxy.uapi.DeviceState;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The agent's own meters, next to Vert.x's net, HTTP and event-bus meters in the same registry. Prometheus names:
 * {@code vmp_migrated_bytes_total{agent,device,phase,direction}}, {@code vmp_migrations_total{agent,role,outcome}},
 * {@code vmp_migration_duration_seconds}, {@code vmp_migration_downtime_seconds} (histograms),
 * {@code vmp_device_transition_seconds{agent,device,from,to}} (histogram), {@code vmp_migrations_active{agent,role}}
 * and {@code vmp_device_state{agent,device}} (the uAPI value: 1 STOP, 2 RUNNING, 3 STOP_COPY, 4 RESUMING, ...).
 * Relays: {@code vmp_relay_bytes_total{agent,direction,channel}}, {@code vmp_relay_section_bytes_total{agent,kind}},
 * {@code vmp_relay_pages_total{agent,kind}}, {@code vmp_relays_total{agent,role,outcome}},
 * {@code vmp_relays_active{agent,role}}, {@code vmp_relay_duration_seconds} and
 * {@code vmp_relay_wire_downtime_seconds} (histograms). The agent: {@code vmp_agent_ready{agent}},
 * {@code vmp_device_holder{agent,device}}, {@code vmp_cluster_agents{agent}}.
 */
public final class AgentMetrics implements MigrationMetrics, RelayMetrics {

    private final MeterRegistry registry;
    private final String agent;
    private final Map<String, AtomicInteger> deviceStates = new ConcurrentHashMap<>();
    private final Map<String, AtomicInteger> active = new ConcurrentHashMap<>();
    private final Map<String, AtomicInteger> activeRelays = new ConcurrentHashMap<>();
    private final AtomicInteger ready = new AtomicInteger();
    private final AtomicInteger clusterAgents = new AtomicInteger();

    public AgentMetrics(MeterRegistry registry, String agent) {
        this.registry = registry;
        this.agent = agent;
        for (String role : new String[] {"source", "destination"}) {
            AtomicInteger count = new AtomicInteger();
            active.put(role, count);
            Gauge.builder("vmp.migrations.active", count, AtomicInteger::get)
                    .description("Migrations in progress").tags("agent", agent, "role", role).register(registry);
            AtomicInteger relays = new AtomicInteger();
            activeRelays.put(role, relays);
            Gauge.builder("vmp.relays.active", relays, AtomicInteger::get)
                    .description("Relays in progress").tags("agent", agent, "role", role).register(registry);
        }
        // Every outcome counted from 0: an alert on increase() cannot see a counter's first value.
        for (String role : new String[] {"source", "destination"}) {
            for (String outcome : new String[] {"completed", "failed", "cancelled"}) {
                migrationsEnded(role, outcome);
                relaysEnded(role, outcome);
            }
        }
        Gauge.builder("vmp.agent.ready", ready, AtomicInteger::get)
                .description("1 while the agent is ready (GET /readyz answers 200), else 0").tags("agent", agent)
                .register(registry);
        Gauge.builder("vmp.cluster.agents", clusterAgents, AtomicInteger::get)
                .description("Agents this agent sees in its cluster, itself included; 0 when clustering is off")
                .tags("agent", agent).register(registry);
    }

    /** How many agents this one sees in its cluster, itself included. */
    public void clusterAgents(int count) {
        clusterAgents.set(count);
    }

    /** The last readiness the agent found. */
    public void ready(boolean value) {
        ready.set(value ? 1 : 0);
    }

    /**
     * Who accounts for {@code device} being out of RUNNING, read at each scrape: a device stopped with holder 0 is
     * one nothing explains (an alert).
     */
    public void holder(DeviceHandle device) {
        Gauge.builder("vmp.device.holder", device, d -> d.holder().value())
                .description("Who accounts for the device's state: 0 nobody, 1 a migration, 2 held for its consumer, "
                        + "3 moved to a destination (committed source), 4 handed over")
                .tags("agent", agent, "device", device.name()).strongReference(true).register(registry);
    }

    public MeterRegistry registry() {
        return registry;
    }

    /** One direct arc of a device, with how long the kernel call took. */
    public void arc(String device, DeviceState from, DeviceState to, long nanos) {
        Timer.builder("vmp.device.transition")
                .description("Time of one device state arc (VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE)")
                .tags("agent", agent, "device", device, "from", from.name(), "to", to.name())
                .publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofNanos(1000))
                .maximumExpectedValue(Duration.ofSeconds(60))
                .register(registry)
                .record(nanos, TimeUnit.NANOSECONDS);
        deviceState(device, to);
    }

    /** The device's current state, as a gauge of its uAPI value. */
    public void deviceState(String device, DeviceState state) {
        deviceStates.computeIfAbsent(device, d -> {
            AtomicInteger v = new AtomicInteger();
            Gauge.builder("vmp.device.state", v, AtomicInteger::get)
                    .description("Device migration state, uAPI value (1 STOP, 2 RUNNING, 3 STOP_COPY, 4 RESUMING, "
                            + "5 RUNNING_P2P, 6 PRE_COPY, 7 PRE_COPY_P2P, 0 ERROR)")
                    .tags("agent", agent, "device", d).register(registry);
            return v;
        }).set(state.value());
    }

    @Override
    public void bytes(String device, String phase, String direction, long n) {
        if (n > 0) {
            Counter.builder("vmp.migrated.bytes").baseUnit("bytes")
                    .description("Device state bytes migrated")
                    .tags("agent", agent, "device", device, "phase", phase, "direction", direction)
                    .register(registry).increment(n);
        }
    }

    @Override
    public void started(MigrationStatus.Role role) {
        active.get(name(role)).incrementAndGet();
    }

    @Override
    public void ended(MigrationStatus.Role role, MigrationStatus.Outcome outcome, double durationMillis,
            double downtimeMillis) {
        active.get(name(role)).decrementAndGet();
        migrationsEnded(name(role), outcome.name().toLowerCase()).increment();
        if (durationMillis >= 0) {
            Timer.builder("vmp.migration.duration").description("Migration duration, handshake to end")
                    .tags("agent", agent, "role", name(role)).publishPercentileHistogram()
                    .register(registry).record((long) (durationMillis * 1e6), TimeUnit.NANOSECONDS);
        }
        if (downtimeMillis >= 0) {
            Timer.builder("vmp.migration.downtime")
                    .description("Time the devices were stopped: first source arc out of running to the last LOADED")
                    .tags("agent", agent).publishPercentileHistogram()
                    .register(registry).record((long) (downtimeMillis * 1e6), TimeUnit.NANOSECONDS);
        }
    }

    private Counter migrationsEnded(String role, String outcome) {
        return Counter.builder("vmp.migrations").description("Migrations by outcome")
                .tags("agent", agent, "role", role, "outcome", outcome).register(registry);
    }

    private Counter relaysEnded(String role, String outcome) {
        return Counter.builder("vmp.relays").description("Relays by outcome")
                .tags("agent", agent, "role", role, "outcome", outcome).register(registry);
    }

    private static String name(MigrationStatus.Role role) {
        return role.name().toLowerCase();
    }

    /**
     * What the agent does with each arc of a device: time it here, and hand it to {@code publish} (the event bus).
     */
    public DeviceController.TransitionListener deviceListener(DeviceController.TransitionListener publish) {
        return new DeviceController.TransitionListener() {
            @Override
            public void onTransition(String device, DeviceState from, DeviceState to, String cause, long arcNanos) {
                arc(device, from, to, arcNanos);
                publish.onTransition(device, from, to, cause, arcNanos);
            }

            @Override
            public void onOpened(String device, DeviceState state) {
                deviceState(device, state);
            }
        };
    }

    @Override
    public void relayStarted(String role) {
        activeRelays.get(role).incrementAndGet();
    }

    @Override
    public void relayEnded(String role, String outcome, long durationNanos, long wireDowntimeNanos) {
        activeRelays.get(role).decrementAndGet();
        relaysEnded(role, outcome).increment();
        if (durationNanos >= 0) {
            Timer.builder("vmp.relay.duration").description("Relay duration, start to end")
                    .tags("agent", agent, "role", role).publishPercentileHistogram()
                    .register(registry).record(durationNanos, TimeUnit.NANOSECONDS);
        }
        if (wireDowntimeNanos >= 0) {
            Timer.builder("vmp.relay.wire.downtime")
                    .description("From the first SECTION_END of the hypervisor's stream (its VM stopped) to its EOF")
                    .tags("agent", agent).publishPercentileHistogram()
                    .register(registry).record(wireDowntimeNanos, TimeUnit.NANOSECONDS);
        }
    }

    @Override
    public void relayBytes(String direction, String channel, long n) {
        Counter.builder("vmp.relay.bytes").baseUnit("bytes").description("Bytes relayed between hypervisors")
                .tags("agent", agent, "direction", direction, "channel", channel).register(registry).increment(n);
    }

    @Override
    public void relaySectionBytes(String kind, long n) {
        Counter.builder("vmp.relay.section.bytes").baseUnit("bytes")
                .description("Bytes of the hypervisor's main channel by kind of section (ram, vfio, device, other)")
                .tags("agent", agent, "kind", kind).register(registry).increment(n);
    }

    @Override
    public void relayPages(String kind, long n) {
        Counter.builder("vmp.relay.pages").description("RAM pages relayed, whole (normal) or as zero pages")
                .tags("agent", agent, "kind", kind).register(registry).increment(n);
    }
}
