package io.vfioproxy.cli;

import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.bench.AgentBench;
import io.vfioproxy.bench.CpuTime;
import io.vfioproxy.bench.DeviceBaseline;
import io.vfioproxy.bench.MemorySampler;
import io.vfioproxy.bench.RawBaseline;
import io.vfioproxy.bench.RelayBench;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.security.TlsMaterial;
import io.vfioproxy.util.ByteSize;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.stream.IntStream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Measures the agent's data path against what the machine can do, in the same run: two agents on loopback
 * against a plain Java NIO transfer of the same bytes (and socat where installed).
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Migration throughput between two agents on loopback against a raw NIO baseline moving the "
                + "same bytes in the same run. Prints 'agents: N.NN GB/s', 'baseline: N.NN GB/s' and 'ratio to raw "
                + "baseline: 0.NN' (GB = 10^9 bytes of device state). --full runs every scenario of docs/BENCHMARKS.md.")
public final class BenchCommand implements Callable<Integer> {

    private static final int BUFFER = 1 << 20;
    /** The source workload's dirty rate for pre-copy, unless a run sets its own. */
    private static final String PRECOPY_DIRTY_RATE = "32MiB";
    /** State moved by each side before the measured runs. */
    private static final long WARM_UP_BYTES = 8L << 30;

    @Option(names = "--size", defaultValue = "1GiB", description = "device state size (${DEFAULT-VALUE})")
    String size;

    @Option(names = "--precopy", description = "pre-copy (default: stop-copy)")
    boolean precopy;

    @Option(names = "--tls", description = "mutual TLS between the agents")
    boolean tls;

    @Option(names = "--websocket", description = "the stream over the destination's WebSocket endpoint (ws:// or "
            + "wss://) instead of its TCP one")
    boolean websocket;

    @Option(names = "--runs", defaultValue = "3", description = "runs of each, the median is reported (${DEFAULT-VALUE})")
    int runs;

    @Option(names = "--full", description = "every scenario: sizes, modes, TLS, concurrency, latency, memory")
    boolean full;

    @Option(names = "--relay", description = "relay mode: bytes from a unix socket through both agents to a unix "
            + "socket, against the same bytes through two socat processes (unix to TCP, TCP to unix)")
    boolean relay;

    @Option(names = "--devices", defaultValue = "1", description = "migrate this many devices as one migration "
            + "(sizes --size, half of it, a quarter, ...) against the largest alone, same run: their downtimes")
    int devices;

    @Option(names = "--device-rate", defaultValue = "0", description = "with --devices, how fast each simulated device "
            + "produces and absorbs its state, as a device's firmware does (e.g. 400MB; 0: as fast as the agents move "
            + "it, so the cores are the limit)")
    String deviceRate;

    @Option(names = "--memory", description = "memory of one stop-copy migration of --size over TCP and WebSocket, "
            + "each in the clear and with mutual TLS, after one of the same size: idle, peak and above idle, heap and "
            + "direct")
    boolean memory;

    @Option(names = "--out", description = "with --full, also write the Markdown tables to this file")
    Path out;

    private final PrintStream console = System.out;

    static double median(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    /** Round by round, {@code of[i] / to[i]}: the rounds alternate, so each ratio is taken under one condition. */
    static double[] ratios(double[] of, double[] to) {
        double[] r = new double[of.length];
        for (int i = 0; i < of.length; i++) {
            r[i] = of[i] / to[i];
        }
        return r;
    }

    /** The values with two decimals, in order: each round's ratio, printed for the reader to see the spread. */
    static String rounds(double[] values) {
        return String.join(" ", Arrays.stream(values).mapToObj(v -> String.format(Locale.ROOT, "%.2f", v)).toList());
    }

    /** One side of a comparison: GB of state per second and CPU seconds (user+sys, whole JVM) per GB. */
    record Measured(double gbPerSecond, double cpuSecondsPerGb) {
        static Measured median(Measured[] runs) {
            return new Measured(BenchCommand.median(rates(runs)), BenchCommand.median(cpu(runs)));
        }

        static double[] rates(Measured[] runs) {
            return Arrays.stream(runs).mapToDouble(Measured::gbPerSecond).toArray();
        }

        static double[] cpu(Measured[] runs) {
            return Arrays.stream(runs).mapToDouble(Measured::cpuSecondsPerGb).toArray();
        }
    }

    /** A run's work, returning the seconds it took by its own clock. */
    interface Timed {
        double seconds() throws Exception;
    }

    /** Runs {@code work} over {@code stateBytes} of state and measures its throughput and its CPU per GB. */
    static Measured measure(long stateBytes, Timed work) throws Exception {
        long cpu = CpuTime.processNanos();
        double seconds = work.seconds();
        double cpuSeconds = (CpuTime.processNanos() - cpu) / 1e9;
        return new Measured(stateBytes / seconds / 1e9, cpuSeconds / (stateBytes / 1e9));
    }

    /**
     * One scenario against both baselines, same run: medians of alternating runs. The ratios are the medians of each
     * round's own ratio: a round's three runs follow one another within seconds, so they share the machine's
     * conditions (a neighbour's load, the host's steal time), which the medians taken apart do not.
     *
     * @param deviceRatios each round's agents' throughput over the device-to-device baseline's
     * @param rawRatios each round's agents' throughput over the raw baseline's
     * @param cpuRatios each round's agents' CPU per GB over the device-to-device baseline's
     */
    record Compared(Measured agents, Measured baseline, Measured devices, double downtimeMillis,
            double[] deviceRatios, double[] rawRatios, double[] cpuRatios) {

        static Compared of(Measured[] agents, Measured[] baseline, Measured[] devices, double[] downtime) {
            return new Compared(Measured.median(agents), Measured.median(baseline), Measured.median(devices),
                    median(downtime), ratios(Measured.rates(agents), Measured.rates(devices)),
                    ratios(Measured.rates(agents), Measured.rates(baseline)),
                    ratios(Measured.cpu(agents), Measured.cpu(devices)));
        }

        double ratio() {
            return median(rawRatios);
        }

        double deviceRatio() {
            return median(deviceRatios);
        }

        double cpuRatio() {
            return median(cpuRatios);
        }
    }

    /** The modes and transports warmed up in this JVM already. */
    private final java.util.Set<String> warmed = new java.util.HashSet<>();

    private Compared compare(long bytes, Mode mode, boolean withTls) throws Exception {
        return compare(bytes, mode, withTls, mode == Mode.PRECOPY ? ByteSize.parse(PRECOPY_DIRTY_RATE) : 0);
    }

    /** @param dirtyRate the source workload's dirty rate in bytes per second, for pre-copy */
    private Compared compare(long bytes, Mode mode, boolean withTls, long dirtyRate) throws Exception {
        try (AgentBench bench = new AgentBench(List.of(bytes), withTls, websocket, Long.toString(dirtyRate))) {
            // Warm up, as for the relay: the JIT compiles the agents' path (and the simulated devices') over the first
            // gigabytes, and a figure taken before measures the compiler. Once per mode and transport in this JVM.
            long warmUp = warmed.add(mode + "/" + withTls + "/" + websocket) ? WARM_UP_BYTES : bytes;
            for (long moved = 0; moved < warmUp; moved += bytes) {
                bench.migrate(1, mode);
                DeviceBaseline.migrate(bytes, BUFFER);
            }
            long streamBytes = bench.lastStreamBytes();
            RawBaseline.nio(streamBytes, BUFFER);
            Measured[] agents = new Measured[runs];
            Measured[] baseline = new Measured[runs];
            Measured[] devices = new Measured[runs];
            double[] downtime = new double[runs];
            for (int i = 0; i < runs; i++) {
                // Alternate, so all three see the same machine.
                baseline[i] = measure(bytes, () -> RawBaseline.nio(streamBytes, BUFFER));
                devices[i] = measure(bytes, () -> DeviceBaseline.migrate(bytes, BUFFER));
                AgentBench.Run[] run = new AgentBench.Run[1];
                agents[i] = measure(bytes, () -> {
                    run[0] = bench.migrate(1, mode).get(0);
                    return run[0].seconds();
                });
                downtime[i] = run[0].downtimeMillis();
            }
            return Compared.of(agents, baseline, devices, downtime);
        }
    }

    @Override
    public Integer call() throws Exception {
        if (full) {
            return fullReport();
        }
        if (relay) {
            return relayReport(ByteSize.parse(size));
        }
        if (memory) {
            return memoryReport(ByteSize.parse(size));
        }
        if (devices > 1) {
            return devicesReport(ByteSize.parse(size), precopy ? Mode.PRECOPY : Mode.STOP_COPY);
        }
        long bytes = ByteSize.parse(size);
        Mode mode = precopy ? Mode.PRECOPY : Mode.STOP_COPY;
        console.printf("bench: %s of simulated device state, %s, %s%s, median of %d runs%n", ByteSize.format(bytes),
                precopy ? "pre-copy" : "stop-copy",
                tls ? "mutual TLS (" + TlsMaterial.engineName() + " engine)" : "in the clear on loopback (security.insecure)",
                websocket ? ", over WebSocket" : "", runs);
        Compared c = compare(bytes, mode, tls);
        console.printf(Locale.ROOT, "agents: %.2f GB/s%n", c.agents().gbPerSecond());
        console.printf(Locale.ROOT, "baseline: %.2f GB/s%n", c.baseline().gbPerSecond());
        console.printf(Locale.ROOT, "device-to-device baseline: %.2f GB/s%n", c.devices().gbPerSecond());
        console.printf(Locale.ROOT, "ratio to raw baseline: %.2f%n", c.ratio());
        console.printf(Locale.ROOT, "ratio to device-to-device baseline: %.2f%n", c.deviceRatio());
        console.printf("ratio to device-to-device baseline, round by round: %s%n", rounds(c.deviceRatios()));
        console.printf(Locale.ROOT, "cpu per GB: agents %.2f s, device-to-device baseline %.2f s, raw baseline %.2f s "
                + "(user+sys of this JVM)%n", c.agents().cpuSecondsPerGb(), c.devices().cpuSecondsPerGb(),
                c.baseline().cpuSecondsPerGb());
        console.printf(Locale.ROOT, "cpu per GB, agents over device-to-device baseline: %.2f (round by round: %s)%n",
                c.cpuRatio(), rounds(c.cpuRatios()));
        return 0;
    }

    /** {@code bench --relay}: the agents' relay against a chain of two socat processes, same bytes, same run. */
    private int relayReport(long bytes) throws Exception {
        Path socat = RawBaseline.socat();
        if (socat == null) {
            System.err.println("bench --relay compares with socat, which is not installed (apt-get install socat)");
            return 2;
        }
        console.printf("bench --relay: %s from a unix socket to a unix socket, in the clear on loopback "
                + "(security.insecure), median of %d runs%n",
                ByteSize.format(bytes), runs);
        try (RelayBench bench = new RelayBench()) {
            // Warm up: the JIT compiles the relay's path over the first gigabytes; socat needs nothing.
            for (long warmed = 0; warmed < WARM_UP_BYTES; warmed += bytes) {
                bench.relay(bytes);
            }
            bench.socatChain(socat, bytes);
            double[] relays = new double[runs];
            double[] chains = new double[runs];
            long peakDirect = 0;
            long peakHeap = 0;
            for (int i = 0; i < runs; i++) {
                chains[i] = bytes / bench.socatChain(socat, bytes) / 1e9;
                RelayBench.Run run = bench.relay(bytes);
                relays[i] = bytes / run.seconds() / 1e9;
                peakDirect = Math.max(peakDirect, run.peakDirect());
                peakHeap = Math.max(peakHeap, run.peakHeap());
            }
            double r = median(relays);
            double c = median(chains);
            console.printf(Locale.ROOT, "relay: %.2f GB/s%n", r);
            console.printf(Locale.ROOT, "socat chain: %.2f GB/s%n", c);
            double[] toChain = ratios(relays, chains);
            console.printf(Locale.ROOT, "ratio to socat chain: %.2f%n", median(toChain));
            console.printf("ratio to socat chain, round by round: %s%n", rounds(toChain));
            console.printf("memory of both agents while relaying: peak direct %s, peak heap %s%n",
                    ByteSize.format(peakDirect), ByteSize.format(peakHeap));
        }
        return 0;
    }

    /**
     * {@code bench --devices N}: N devices of different sizes as one migration, against the largest alone, in the
     * same run: what migrating them together adds to the workload's downtime.
     */
    private int devicesReport(long largest, Mode mode) throws Exception {
        List<Long> sizes = new ArrayList<>();
        for (int i = 0; i < devices; i++) {
            // Halving, kept a whole number of pages.
            sizes.add(Math.max(LoopbackAgent.PAGE, (largest >> i) / LoopbackAgent.PAGE * LoopbackAgent.PAGE));
        }
        List<Integer> all = IntStream.range(0, devices).boxed().toList();
        long dirty = mode == Mode.PRECOPY ? ByteSize.parse(PRECOPY_DIRTY_RATE) : 0;
        long rate = ByteSize.parse(deviceRate);
        console.printf("bench --devices %d: %s of simulated device state, %s, %s, in the clear on loopback "
                + "(security.insecure), median of %d runs%n", devices,
                String.join(", ", sizes.stream().map(ByteSize::format).toList()),
                mode == Mode.PRECOPY ? "pre-copy" : "stop-copy",
                rate > 0 ? "each device moving its data at most " + ByteSize.format(rate) + "/s"
                        : "devices as fast as the agents", runs);
        try (AgentBench bench = new AgentBench(sizes, false, false, Long.toString(dirty), Long.toString(rate))) {
            for (long moved = 0; moved < WARM_UP_BYTES; moved += largest) {
                bench.migrateTogether(List.of(0), mode);
            }
            bench.migrateTogether(all, mode);
            bench.migrateOnOneConnection(all, mode);
            double[] together = new double[runs];
            double[] shared = new double[runs];
            double[] alone = new double[runs];
            for (int i = 0; i < runs; i++) {
                together[i] = bench.migrateTogether(all, mode).downtimeMillis();
                shared[i] = bench.migrateOnOneConnection(all, mode).downtimeMillis();
                alone[i] = bench.migrateTogether(List.of(0), mode).downtimeMillis();
            }
            double group = median(together);
            double oneConnection = median(shared);
            double single = median(alone);
            console.printf(Locale.ROOT, "downtime: %.0f ms (the %d devices as one migration, a connection each)%n",
                    group, devices);
            console.printf(Locale.ROOT, "downtime: %.0f ms (the %d devices as one migration on one connection)%n",
                    oneConnection, devices);
            console.printf(Locale.ROOT, "downtime: %.0f ms (the largest alone)%n", single);
            double[] groupToAlone = ratios(together, alone);
            console.printf(Locale.ROOT, "ratio to largest alone: %.2f%n", median(groupToAlone));
            console.printf("ratio to largest alone, round by round: %s%n", rounds(groupToAlone));
            console.printf(Locale.ROOT, "ratio of one connection to largest alone: %.2f%n",
                    median(ratios(shared, alone)));
        }
        return 0;
    }

    /** {@code bench --memory}: the memory table of docs/BENCHMARKS.md for one state size. */
    private int memoryReport(long bytes) throws Exception {
        console.printf("bench --memory: one stop-copy migration of %s over each transport, after one of the same size%n",
                ByteSize.format(bytes));
        memoryTable(bytes);
        return 0;
    }

    /**
     * One stop-copy migration of {@code size} over each transport, as Markdown rows (printed as they come). Each
     * transport holds buffers of its own: TCP the socket's write queue, TLS the engine's records besides, WebSocket
     * the frames Netty's decoder gathers.
     */
    private List<String> memoryTable(long size) throws Exception {
        List<String> rows = new ArrayList<>(List.of("| transport | idle | peak | above idle |", "|---|---|---|---|"));
        rows.forEach(console::println);
        for (Transport transport : Transport.values()) {
            String row = memoryRow(transport, size);
            console.println(row);
            rows.add(row);
        }
        return rows;
    }

    /** The transports the memory table covers, with their names in it. */
    private enum Transport {
        PLAINTEXT("plaintext", false, false), TLS("mutual TLS", true, false), WEBSOCKET("WebSocket", false, true),
        SECURE_WEBSOCKET("WebSocket, mutual TLS", true, true);

        final String label;
        final boolean tls;
        final boolean webSocket;

        Transport(String label, boolean tls, boolean webSocket) {
            this.label = label;
            this.tls = tls;
            this.webSocket = webSocket;
        }
    }

    /** One stop-copy migration's memory over {@code transport}, after one of the same size as warm-up. */
    private static String memoryRow(Transport transport, long size) throws Exception {
        try (AgentBench bench = new AgentBench(List.of(size), transport.tls, transport.webSocket, "0")) {
            bench.migrate(1, Mode.STOP_COPY);
            System.gc();
            long idleHeap = MemorySampler.heap();
            long idleLive = liveHeap();
            long idleDirect = MemorySampler.direct();
            long peakLive;
            MemorySampler sampler = new MemorySampler();
            try (sampler) {
                bench.migrate(1, Mode.STOP_COPY);
                System.gc();
                peakLive = liveHeap();
            }
            return String.format(Locale.ROOT, "| %s | heap in use %s, direct %s | heap in use %s (live after GC %s), "
                    + "direct %s | direct %s, live heap %s |", transport.label, ByteSize.format(idleHeap),
                    ByteSize.format(idleDirect), ByteSize.format(sampler.peakHeap()), ByteSize.format(peakLive),
                    ByteSize.format(sampler.peakDirect()), ByteSize.format(sampler.peakDirect() - idleDirect),
                    ByteSize.format(Math.max(0, peakLive - idleLive)));
        }
    }

    /** Heap in use after the last collection, over the heap pools: the live set, without garbage. */
    private static long liveHeap() {
        long sum = 0;
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP && pool.getCollectionUsage() != null) {
                sum += pool.getCollectionUsage().getUsed();
            }
        }
        return sum;
    }

    private int fullReport() throws Exception {
        List<String> md = new ArrayList<>();
        md.add("### Throughput against the device-to-device and NIO baselines (median of " + runs + " runs)");
        md.add("");
        md.add("| state | mode | transport | agents GB/s | device-to-device GB/s | NIO GB/s | ratio to devices | "
                + "ratio to NIO | CPU s/GB agents | CPU s/GB devices | downtime ms |");
        md.add("|---|---|---|---|---|---|---|---|---|---|---|");
        List<String> downtimes = new ArrayList<>();
        for (String s : List.of("256MiB", "1GiB", "4GiB")) {
            for (boolean withTls : new boolean[] {false, true}) {
                long size = ByteSize.parse(s);
                Compared stopCopy = compare(size, Mode.STOP_COPY, withTls, 0);
                // Pre-copy with the workload dirtying 1% of what the link moved in stop-copy, this run.
                long dirtyRate = Math.round(stopCopy.agents().gbPerSecond() * 1e9 / 100);
                Compared precopy = compare(size, Mode.PRECOPY, withTls, dirtyRate);
                for (Compared c : List.of(stopCopy, precopy)) {
                    String row = String.format(Locale.ROOT,
                            "| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %d |", s,
                            c == precopy ? "pre-copy" : "stop-copy", withTls ? "mutual TLS" : "plaintext",
                            c.agents().gbPerSecond(), c.devices().gbPerSecond(), c.baseline().gbPerSecond(),
                            c.deviceRatio(), c.ratio(), c.agents().cpuSecondsPerGb(), c.devices().cpuSecondsPerGb(),
                            Math.round(c.downtimeMillis()));
                    console.println(row);
                    md.add(row);
                }
                downtimes.add(String.format(Locale.ROOT, "| %s | %s | %s | %d | %d |", s,
                        withTls ? "mutual TLS" : "plaintext", ByteSize.format(dirtyRate) + "/s",
                        Math.round(precopy.downtimeMillis()), Math.round(stopCopy.downtimeMillis())));
            }
        }
        md.add("");
        md.add("### Pre-copy downtime against state size (dirty rate 1% of the stop-copy bandwidth of the same run)");
        md.add("");
        md.add("| state | transport | dirty rate | pre-copy downtime ms | stop-copy downtime ms |");
        md.add("|---|---|---|---|---|");
        md.addAll(downtimes);
        downtimes.forEach(console::println);
        Path socat = RawBaseline.socat();
        long gib = 1L << 30;
        md.add("");
        if (socat != null) {
            double t = RawBaseline.socat(socat, gib);
            md.add(String.format(Locale.ROOT, "socat (1 MiB buffers, two processes) moved 1 GiB at %.2f GB/s.",
                    gib / t / 1e9));
        } else {
            md.add("socat is not installed on this machine: no socat baseline.");
        }
        console.println(md.get(md.size() - 1));

        md.add("");
        md.add("### Memory during a 4 GiB stop-copy migration");
        md.add("");
        md.addAll(memoryTable(4 * gib));

        md.add("");
        md.add("### Concurrent migrations (256 MiB each, stop-copy, plaintext)");
        md.add("");
        md.add("| migrations | aggregate GB/s | slowest GB/s | fastest GB/s | fastest / slowest |");
        md.add("|---|---|---|---|---|");
        for (int n : new int[] {1, 4, 16}) {
            try (AgentBench bench = new AgentBench(n, 256L << 20, false, "0")) {
                bench.migrate(n, Mode.STOP_COPY);
                long start = System.nanoTime();
                List<AgentBench.Run> each = bench.migrate(n, Mode.STOP_COPY);
                double wall = (System.nanoTime() - start) / 1e9;
                double[] rates = each.stream().mapToDouble(AgentBench.Run::gbPerSecond).sorted().toArray();
                String row = String.format(Locale.ROOT, "| %d | %.2f | %.2f | %.2f | %.2f |", n,
                        n * (256L << 20) / wall / 1e9, rates[0], rates[rates.length - 1], rates[rates.length - 1] / rates[0]);
                console.println(row);
                md.add(row);
            }
        }

        md.add("");
        md.add("### State transition through the device worker, request to published event (simulated device)");
        md.add("");
        try (AgentBench bench = new AgentBench(1, 64L << 20, false, "0")) {
            double[] micros = bench.transitionLatencyMicros(1000);
            String row = String.format(Locale.ROOT, "1000 arcs RUNNING <-> RUNNING_P2P: median %.0f µs, p90 %.0f µs, "
                    + "p99 %.0f µs, max %.0f µs.", micros[500], micros[900], micros[990], micros[999]);
            console.println(row);
            md.add(row);
        }
        if (out != null) {
            Files.write(out, md);
        }
        return 0;
    }
}
