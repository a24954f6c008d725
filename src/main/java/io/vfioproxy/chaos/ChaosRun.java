package io.vfioproxy.chaos;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.util.ByteSize;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Migrations between two agents in JVMs of their own, on loopback, with a fault chosen by a seed for each: either
 * agent SIGKILLed at a random moment (and started again on its journal and file-backed devices), the connection cut
 * or stalled, an ioctl failing at an arc of either side, a slow destination device, a cancel, several migrations
 * at once. After each it checks, through the API and the devices' digests, that no device was stranded and no
 * state lost, and at the end that the agents did not leak fds or threads (/proc) or direct buffers (the JVM's own
 * count, from the agent's metrics).
 */
public final class ChaosRun {

    /** What is done to a migration. */
    enum Fault {
        NONE("none"), KILL_SOURCE("kill-source"), KILL_DESTINATION("kill-destination"), CUT("cut"), STALL("stall"),
        IOCTL("ioctl"), SLOW("slow-device"), CANCEL("cancel"), CONCURRENT("concurrent");

        final String label;

        Fault(String label) {
            this.label = label;
        }
    }

    /** The arcs an ioctl fails at on the device that fails them (a source arc, a destination arc). */
    private static final String[] SOURCE_ARCS = {"RUNNING->RUNNING_P2P", "RUNNING_P2P->STOP", "STOP->STOP_COPY",
        "RUNNING->PRE_COPY", "PRE_COPY->PRE_COPY_P2P"};
    private static final String[] DESTINATION_ARCS = {"STOP->RESUMING", "RESUMING->STOP", "STOP->RUNNING_P2P"};
    private static final int DEVICES = 4;
    /** Leaks are counted above what a JVM's pools may add once warm. */
    private static final long FD_SLACK = 24;
    private static final long THREAD_SLACK = 12;
    /**
     * Direct memory may grow this much once warm: Netty's pools and the write queues of concurrent migrations. A
     * buffer not released per migration (a 1 MiB chunk each) passes it within the first hundred rounds.
     */
    private static final long DIRECT_SLACK = 64L << 20;

    /** The result, as the last line says it. */
    public record Summary(int migrations, int faults, int stranded, int lost, int leaked) {
        public boolean passed() {
            return stranded == 0 && lost == 0 && leaked == 0;
        }
    }

    private final Path dir;
    private final long size;
    private final SplittableRandom random;
    private final PrintStream out;
    private final Map<Fault, int[]> counts = new EnumMap<>(Fault.class);
    private final List<String> problems = new ArrayList<>();
    private Vertx vertx;
    private WebClient http;
    private final AgentNode[] nodes = new AgentNode[2];
    private final FaultyLink[] links = new FaultyLink[2];
    private final int[] linkPorts = new int[2];
    /** Per device index: which node holds its live state, and that state's digest. */
    private final int[] holder = new int[DEVICES];
    private final String[] digest = new String[DEVICES];
    private final long[][] baseline = new long[2][];
    /** The round each node was last started in: its fds and threads are measured once it has warmed up. */
    private final int[] startedIn = new int[2];
    private int round;
    private int stranded;
    private int lost;

    public ChaosRun(Path dir, long size, long seed, PrintStream out) {
        this.dir = dir;
        this.size = size;
        this.random = new SplittableRandom(seed);
        this.out = out;
    }

    private JsonObject config(String name, int index) {
        LoopbackAgent agent = LoopbackAgent.named(name).journal(dir.resolve(name + "-journal"))
                // Short watchdogs: a stalled link costs the run this long each time.
                .merge("migration", new JsonObject().put("progressTimeoutMillis", 1500))
                .merge("stream", new JsonObject().put("handshakeTimeoutMillis", 3000));
        for (int d = 0; d < DEVICES; d++) {
            JsonObject device = LoopbackAgent.simulated("sim" + d, size, 100L * index + d + 1)
                    .put("stateFile", dir.resolve(name + "-sim" + d + ".state").toString());
            if (d == 2) {
                device.put("faults", new JsonObject().put("writeDelayMillis", 10));
            }
            if (d == 3) {
                String[] arcs = index == 0 ? SOURCE_ARCS : DESTINATION_ARCS;
                device.put("faults", new JsonObject().put("failArc", arcs[random.nextInt(arcs.length)])
                        .put("errno", "EIO"));
            }
            agent.device(device);
        }
        return agent.config();
    }

    /**
     * Runs {@code rounds} rounds (a migration each, three at once in a concurrent round) and prints a line per
     * fault class and the summary.
     */
    public Summary run(int rounds) throws Exception {
        vertx = Vertx.vertx();
        http = WebClient.create(vertx);
        try {
            for (int i = 0; i < 2; i++) {
                nodes[i] = new AgentNode(i == 0 ? "chaos-a" : "chaos-b", dir, config(i == 0 ? "chaos-a" : "chaos-b",
                        i));
                nodes[i].start();
                int n = i;
                links[i] = new FaultyLink(vertx, () -> nodes[n].streamPort());
                linkPorts[i] = links[i].start().await();
            }
            for (int d = 0; d < DEVICES; d++) {
                holder[d] = 0;
                digest[d] = device(0, d).getString("stateDigest");
            }
            int faults = 0;
            for (int m = 0; m < rounds; m++) {
                Fault fault = m < 3 ? Fault.NONE : Fault.values()[random.nextInt(Fault.values().length)];
                if (fault != Fault.NONE && fault != Fault.CONCURRENT) {
                    faults++;
                }
                round = m;
                for (int i = 0; i < 2; i++) {
                    if (baseline[i] == null && m >= startedIn[i] + 3) {
                        baseline[i] = resources(i);
                    }
                }
                round(fault);
            }
            int leaked = leaks();
            for (Map.Entry<Fault, int[]> e : counts.entrySet()) {
                int[] c = e.getValue();
                out.printf("%s: %d (completed %d, failed %d, cancelled %d)%n", e.getKey().label, c[0], c[1], c[2],
                        c[3]);
            }
            problems.forEach(p -> out.println("problem: " + p));
            // Concurrent rounds run several migrations: count what ran.
            int ran = counts.values().stream().mapToInt(c -> c[0]).sum();
            Summary summary = new Summary(ran, faults, stranded, lost, leaked);
            out.printf("chaos: %d migrations, %d faults, stranded %d, lost %d, leaked %d%n", ran, faults,
                    stranded, lost, leaked);
            return summary;
        } finally {
            for (AgentNode n : nodes) {
                if (n != null) {
                    n.close();
                }
            }
            vertx.close().await();
        }
    }

    private JsonObject get(int node, String path) {
        HttpResponse<Buffer> r = http.get(nodes[node].apiPort(), "127.0.0.1", path).send().await();
        if (r.statusCode() != 200) {
            throw new IllegalStateException("GET " + path + " on " + nodes[node].name() + ": " + r.statusCode() + " "
                    + r.bodyAsString());
        }
        return r.bodyAsJsonObject();
    }

    private JsonObject device(int node, int d) {
        return get(node, "/v1/devices/sim" + d);
    }

    /** One migration of a device, or several at once, with {@code fault}. */
    private void round(Fault fault) throws Exception {
        List<Integer> devices = new ArrayList<>();
        switch (fault) {
            case IOCTL -> devices.add(3);
            case SLOW -> devices.add(2);
            case CONCURRENT -> {
                devices.add(0);
                devices.add(1);
                devices.add(2);
            }
            default -> devices.add(random.nextInt(2));
        }
        if (fault == Fault.CUT || fault == Fault.STALL) {
            for (FaultyLink l : links) {
                l.next(fault == Fault.CUT ? FaultyLink.Mode.CUT : FaultyLink.Mode.STALL, random.nextLong(size));
            }
        }
        List<String[]> started = new ArrayList<>();
        for (int d : devices) {
            int source = holder[d];
            int target = 1 - source;
            JsonObject request = new JsonObject().put("device", "sim" + d)
                    .put("destination", "127.0.0.1:" + linkPorts[target])
                    .put("mode", random.nextBoolean() ? "precopy" : "stop-copy");
            HttpResponse<Buffer> r = http.post(nodes[source].apiPort(), "127.0.0.1", "/v1/migrations")
                    .sendJsonObject(request).await();
            if (r.statusCode() != 201) {
                problems.add(fault.label + ": sim" + d + " refused: " + r.bodyAsString());
                stranded++;
                continue;
            }
            started.add(new String[] {r.bodyAsJsonObject().getString("id"), Integer.toString(d),
                Integer.toString(source)});
        }
        if (!started.isEmpty()) {
            int first = Integer.parseInt(started.get(0)[2]);
            switch (fault) {
                case KILL_SOURCE -> restart(first);
                case KILL_DESTINATION -> restart(1 - first);
                case CANCEL -> {
                    pause(random.nextInt(200));
                    http.post(nodes[first].apiPort(), "127.0.0.1", "/v1/migrations/" + started.get(0)[0] + "/cancel")
                            .send().await();
                }
                default -> { }
            }
        }
        for (String[] s : started) {
            check(fault, s[0], Integer.parseInt(s[1]), Integer.parseInt(s[2]));
        }
        for (FaultyLink l : links) {
            l.next(FaultyLink.Mode.PASS, 0);
        }
    }

    /** The fault's timing, not a wait for a condition: a kill or a cancel at a random moment of the migration. */
    private static void pause(long millis) throws InterruptedException {
        Thread.sleep(millis);
    }

    private void restart(int node) throws Exception {
        pause(random.nextInt(300));
        nodes[node].kill();
        nodes[node].start();
        baseline[node] = null;
        startedIn[node] = round;
    }

    /** Waits for the migration's end on both sides, then checks the devices. */
    private void check(Fault fault, String id, int d, int source) throws Exception {
        int target = 1 - source;
        String outcome = settle(source, id);
        String destination = settle(target, id);
        int[] c = counts.computeIfAbsent(fault, f -> new int[4]);
        c[0]++;
        JsonObject src = device(source, d);
        JsonObject dst = device(target, d);
        String what = "round " + round + ": " + fault.label + " " + id + " (sim" + d + " " + nodes[source].name() + " -> "
                + nodes[target].name() + ", " + outcome + "/" + destination + ")";
        if (outcome == null || destination == null) {
            stranded++;
            problems.add(what + ": still active after 60 s");
            return;
        }
        if (!ok(src.getString("state")) || !ok(dst.getString("state"))) {
            stranded++;
            problems.add(what + ": devices in " + src.getString("state") + " and " + dst.getString("state"));
            return;
        }
        switch (outcome) {
            case "completed" -> {
                c[1]++;
                if (!digest[d].equals(dst.getString("stateDigest")) || !"STOP".equals(src.getString("state"))) {
                    lost++;
                    problems.add(what + ": completed, but the destination's state differs or the source runs ("
                            + src.getString("state") + ")");
                    return;
                }
                holder[d] = target;
            }
            case "cancelled", "failed", "absent" -> {
                c["cancelled".equals(outcome) ? 3 : 2]++;
                if (digest[d].equals(src.getString("stateDigest"))) {
                    return;
                }
                if (digest[d].equals(dst.getString("stateDigest"))) {
                    // The destination holds the state the source committed before its end was confirmed.
                    holder[d] = target;
                    return;
                }
                lost++;
                problems.add(what + ": " + outcome + ", and neither side holds the state (source "
                        + src.getString("state") + ")");
            }
            default -> {
                stranded++;
                problems.add(what + ": outcome " + outcome);
            }
        }
    }

    private static boolean ok(String state) {
        return "RUNNING".equals(state) || "STOP".equals(state);
    }

    /** The migration's outcome on {@code node} once it ended, or null after 60 s. */
    private String settle(int node, String id) throws InterruptedException {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (System.nanoTime() < deadline) {
            HttpResponse<Buffer> r = http.get(nodes[node].apiPort(), "127.0.0.1", "/v1/migrations/" + id).send()
                    .await();
            if (r.statusCode() == 200) {
                JsonObject m = r.bodyAsJsonObject();
                String outcome = m.getString("outcome");
                if (!"active".equals(outcome) && (m.containsKey("deviceState") || "failed".equals(outcome))) {
                    return outcome;
                }
            } else if (r.statusCode() == 404) {
                // Never registered there (an agent killed before its journal's first entry, a destination the
                // source never reached; the source side is settled first): nothing to end.
                return "absent";
            }
            Thread.sleep(20);
        }
        return null;
    }

    /** Node {@code i}'s fds and threads (from /proc) and its direct buffer memory (from its metrics). */
    private long[] resources(int i) {
        long[] proc = nodes[i].resources();
        return new long[] {proc[0], proc[1], directMemory(i)};
    }

    /** The JVM's direct buffer memory in use, from the node's Prometheus scrape; -1 where it says nothing of it. */
    private long directMemory(int node) {
        HttpResponse<Buffer> r = http.get(nodes[node].apiPort(), "127.0.0.1", "/metrics").send().await();
        if (r.statusCode() != 200) {
            return -1;
        }
        for (String line : r.bodyAsString().split("\n")) {
            if (line.startsWith("jvm_buffer_memory_used_bytes{") && line.contains("id=\"direct\"")) {
                return (long) Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
            }
        }
        return -1;
    }

    private int leaks() {
        int leaked = 0;
        for (int i = 0; i < 2; i++) {
            long[] now = resources(i);
            if (baseline[i] == null || now[0] < 0) {
                out.printf("%s: not measured: started again in round %d, too near the end to be warm%n",
                        nodes[i].name(), startedIn[i]);
                continue;
            }
            out.printf("%s: %d fds, %d threads, %s of direct buffers once warm; %d, %d, %s at the end%n",
                    nodes[i].name(), baseline[i][0], baseline[i][1], ByteSize.format(baseline[i][2]), now[0], now[1],
                    ByteSize.format(now[2]));
            boolean direct = baseline[i][2] >= 0 && now[2] > baseline[i][2] + DIRECT_SLACK;
            if (now[0] > baseline[i][0] + FD_SLACK || now[1] > baseline[i][1] + THREAD_SLACK || direct) {
                leaked++;
                problems.add(nodes[i].name() + ": " + baseline[i][0] + " fds, " + baseline[i][1] + " threads and "
                        + ByteSize.format(baseline[i][2]) + " of direct buffers became " + now[0] + ", " + now[1]
                        + " and " + ByteSize.format(now[2]));
            }
        }
        return leaked;
    }

}
