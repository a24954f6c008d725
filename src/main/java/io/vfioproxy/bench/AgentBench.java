package io.vfioproxy.bench;

import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.eventbus.MessageConsumer;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.AgentVertx;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.api.Events;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.migration.MigrationStatus;
import io.vfioproxy.security.TrialCredentials;
import io.vfioproxy.stream.StreamEndpoint;
import io.vfioproxy.uapi.DeviceState;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Two real agents on loopback in this JVM, with simulated devices, for the bench: the same code path as a
 * deployment, with the same configuration defaults. Each agent has a Vert.x instance of its own, as on two nodes:
 * sharing one, the source's and the destination's sockets could land on the same event loop, one thread then
 * carrying both ends, and runs differed by a factor of two with where they landed.
 */
public final class AgentBench implements AutoCloseable {

    /** One migration's outcome, as the bench reports it. */
    public record Run(long stateBytes, double seconds, double downtimeMillis) {
        /** GB (10^9 bytes) of device state per second. */
        public double gbPerSecond() {
            return stateBytes / seconds / 1e9;
        }
    }

    private final AgentVertx sourceRuntime;
    private final AgentVertx destinationRuntime;
    private final AgentVerticle source;
    /** A second source agent with the same devices, configured without a connection per device; made on first use. */
    private AgentVerticle sharedSource;
    private final AgentVerticle destination;
    private final List<Long> sizes;
    private final boolean webSocket;
    private final TrialCredentials credentials;
    private final String dirtyRate;
    private final String dataRate;

    /**
     * @param devices how many devices each agent has (d0, d1, ...)
     * @param size each device's state size
     * @param tls security on between the agents: mutual TLS with certificates of a trial CA
     * @param dirtyRate the source workload's dirty rate, for pre-copy ("0" for none)
     */
    public AgentBench(int devices, long size, boolean tls, String dirtyRate) {
        this(java.util.Collections.nCopies(devices, size), tls, dirtyRate);
    }

    /**
     * @param sizes each device's state size, d0 first
     * @param tls security on between the agents: mutual TLS with certificates of a trial CA
     * @param dirtyRate the source workload's dirty rate, for pre-copy ("0" for none)
     */
    public AgentBench(List<Long> sizes, boolean tls, String dirtyRate) {
        this(sizes, tls, false, dirtyRate);
    }

    /**
     * @param webSocket the stream over the WebSocket endpoint of the destination's HTTP server, not its TCP one
     */
    public AgentBench(List<Long> sizes, boolean tls, boolean webSocket, String dirtyRate) {
        this(sizes, tls, webSocket, dirtyRate, "0");
    }

    /**
     * @param dataRate how fast each simulated device produces and absorbs its migration data, as a device's
     *        firmware does ("0" for as fast as the agent moves it)
     */
    public AgentBench(List<Long> sizes, boolean tls, boolean webSocket, String dirtyRate, String dataRate) {
        this.webSocket = webSocket;
        this.dataRate = dataRate;
        this.sizes = List.copyOf(sizes);
        this.sourceRuntime = AgentVertx.create();
        this.destinationRuntime = AgentVertx.create();
        this.credentials = tls ? trial() : null;
        this.destination = start(destinationRuntime, "bench-destination", 1000, "0");
        this.dirtyRate = dirtyRate;
        this.source = start(sourceRuntime, "bench-source", 0, dirtyRate);
    }

    private AgentVerticle start(AgentVertx runtime, String name, long seedBase, String dirtyRate) {
        return start(runtime, LoopbackAgent.named(name), seedBase, dirtyRate);
    }

    private AgentVerticle start(AgentVertx runtime, LoopbackAgent agent, long seedBase, String dirtyRate) {
        if (!webSocket) {
            agent.withoutApi();
        }
        if (credentials != null) {
            agent.secure(credentials);
        }
        for (int i = 0; i < sizes.size(); i++) {
            agent.device(LoopbackAgent.simulated("d" + i, sizes.get(i), seedBase + i).put("dirtyRate", dirtyRate)
                    .put("dataRate", dataRate));
        }
        return agent.start(runtime.vertx(), runtime.registry());
    }

    private static TrialCredentials trial() {
        try {
            return TrialCredentials.create(java.nio.file.Files.createTempDirectory("vmp-bench-certs"),
                    List.of("bench-destination", "bench-source", "bench-source-shared"), 1);
        } catch (java.io.IOException | java.security.GeneralSecurityException e) {
            throw new IllegalStateException("cannot make the bench's certificates: " + e.getMessage(), e);
        }
    }

    /** The source agent's Vert.x. */
    public Vertx vertx() {
        return sourceRuntime.vertx();
    }

    private StreamEndpoint destinationEndpoint() {
        if (!webSocket) {
            return LoopbackAgent.endpoint(destination);
        }
        return StreamEndpoint.parse((credentials != null ? "wss" : "ws") + "://127.0.0.1:" + destination.apiPort());
    }

    /** Every source device back to RUNNING, so the next run starts as a real migration does. */
    private void resetSources(AgentVerticle from) {
        List<Future<Void>> resets = new ArrayList<>();
        for (DeviceHandle d : from.devices().all()) {
            resets.add(d.state().compose(s -> s == DeviceState.RUNNING ? Future.succeededFuture()
                    : d.reset("bench: next run")));
        }
        Future.all(resets).await();
    }

    /** Runs {@code count} migrations at once, one device each, and returns each one's outcome. */
    public List<Run> migrate(int count, MigrationRequest.Mode mode) {
        List<List<Integer>> each = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            each.add(List.of(i));
        }
        return run(source, each, mode);
    }

    /**
     * Migrates the devices named, d0 d1 ..., as one migration: they switch over together, each on a connection of
     * its own.
     */
    public Run migrateTogether(List<Integer> devices, MigrationRequest.Mode mode) {
        return run(source, List.of(devices), mode).get(0);
    }

    /** The same, from a source agent that puts every device on one shared connection. */
    public Run migrateOnOneConnection(List<Integer> devices, MigrationRequest.Mode mode) {
        if (sharedSource == null) {
            sharedSource = start(sourceRuntime, LoopbackAgent.named("bench-source-shared")
                    .set("migration", "connectionPerDevice", false), 0, dirtyRate);
        }
        return run(sharedSource, List.of(devices), mode).get(0);
    }

    /**
     * Starts one migration per list of device indexes, all at once from the source's context, after every source
     * device is back in RUNNING; returns each one's outcome, its state the sum of its devices'.
     */
    private List<Run> run(AgentVerticle from, List<List<Integer>> migrations, MigrationRequest.Mode mode) {
        resetSources(from);
        StreamEndpoint to = destinationEndpoint();
        Promise<List<MigrationService.Started>> started = Promise.promise();
        sourceRuntime.vertx().getOrCreateContext().runOnContext(v -> started.complete(migrations.stream()
                .map(devices -> from.migrations().migrate(new MigrationRequest(devices.stream()
                        .map(i -> new MigrationRequest.DevicePair("d" + i, "d" + i)).toList(), to, mode, false,
                        MigrationRequest.DEFAULT_DOWNTIME_LIMIT_MILLIS, MigrationRequest.DEFAULT_PRECOPY_BUDGET_MILLIS,
                        0, false)))
                .toList()));
        List<Run> runs = new ArrayList<>();
        List<MigrationService.Started> all = started.future().await();
        for (int m = 0; m < all.size(); m++) {
            MigrationStatus r = all.get(m).completion().await();
            lastStreamBytes = r.transfer().dataBytes();
            long bytes = migrations.get(m).stream().mapToLong(sizes::get).sum();
            runs.add(new Run(bytes, r.transferSeconds(), r.downtimeMillis()));
        }
        return runs;
    }

    private volatile long lastStreamBytes;

    /** The device stream bytes the last migration moved (state plus the device's own record headers). */
    public long lastStreamBytes() {
        return lastStreamBytes;
    }

    /**
     * Latency of a state change through the device's worker thread: from the request to the event on the bus,
     * over {@code count} RUNNING/STOP changes on a device of its own, after a warm-up.
     *
     * @return the latencies in microseconds, sorted
     */
    public double[] transitionLatencyMicros(int count) {
        DeviceHandle device = source.devices().find("d0");
        resetSources(source);
        long[] eventAt = new long[1];
        Promise<Void>[] waiting = new Promise[1];
        MessageConsumer<JsonObject> consumer = sourceRuntime.vertx().eventBus().consumer(Events.DEVICE_STATE, m -> {
            if (m.body().getString("device").equals("d0") && waiting[0] != null) {
                eventAt[0] = System.nanoTime();
                waiting[0].tryComplete();
            }
        });
        consumer.completion().await();
        double[] micros = new double[count];
        DeviceState[] targets = {DeviceState.RUNNING_P2P, DeviceState.RUNNING};
        try {
            for (int i = -200; i < count; i++) {
                DeviceState target = targets[(i + 200) % 2];
                Promise<Void> p = Promise.promise();
                waiting[0] = p;
                long start = System.nanoTime();
                device.setState(target, DeviceState.RUNNING, "bench").await();
                p.future().await();
                if (i >= 0) {
                    micros[i] = (eventAt[0] - start) / 1e3;
                }
            }
        } finally {
            consumer.unregister().await();
        }
        Arrays.sort(micros);
        return micros;
    }

    @Override
    public void close() {
        sourceRuntime.vertx().close().await();
        destinationRuntime.vertx().close().await();
        if (credentials != null) {
            try (var files = java.nio.file.Files.list(credentials.dir())) {
                files.forEach(f -> f.toFile().delete());
            } catch (java.io.IOException e) {
                // The temporary directory stays; nothing else depends on it.
            }
            credentials.dir().toFile().delete();
        }
    }
}
