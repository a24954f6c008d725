package io.vfioproxy.bench;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.AgentVertx;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.relay.RelayPhase;
import io.vfioproxy.relay.RelayRecord;
import io.vfioproxy.relay.RelayRequest;
import io.vfioproxy.testing.QemuVm;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The same QEMU migration direct (unix socket to unix socket), through {@code socat UNIX-LISTEN:a,fork
 * UNIX-CONNECT:b}, and through the two agents, with one channel and with multifd over four, in one run: QEMU's own
 * total time and throughput (ram.transferred over total-time). The source guest (512 MiB, 384 MiB of it random)
 * boots once and migrates again after each run; scenarios alternate, each figure is the median.
 *
 * <p>Run: {@code mvn -q test-compile dependency:build-classpath -Dmdep.outputFile=target/cp.txt}, then
 * {@code java -cp target/test-classes:target/classes:$(cat target/cp.txt) io.vfioproxy.bench.QemuRelayBench [runs]}.
 */
public final class QemuRelayBench {

    private static final long UNLIMITED = 16L << 30;

    private QemuRelayBench() {
    }

    private record Result(double seconds, double gbPerSecond, long downtimeMillis) {
    }

    public static void main(String[] args) throws Exception {
        String missing = QemuVm.unavailable();
        if (missing != null || RawBaseline.socat() == null) {
            System.err.println("cannot run: " + (missing != null ? missing : "socat is not installed"));
            System.exit(2);
        }
        int runs = args.length > 0 ? Integer.parseInt(args[0]) : 3;
        Path dir = Files.createTempDirectory("qemu-bench");
        // Each agent on a Vert.x of its own, as on two nodes (and as AgentBench has them): on one, a channel's
        // sockets at both agents could share an event loop, one thread carrying both ends.
        AgentVertx sourceRuntime = AgentVertx.create();
        AgentVertx destinationRuntime = AgentVertx.create();
        AgentVerticle src = LoopbackAgent.named("src").withoutApi().start(sourceRuntime.vertx(),
                sourceRuntime.registry());
        AgentVerticle dst = LoopbackAgent.named("dst").withoutApi().merge("relay", new JsonObject()
                .put("allowedTargets", new JsonArray().add("unix:" + dir + "/"))).start(destinationRuntime.vertx(),
                destinationRuntime.registry());
        Map<String, List<Result>> results = new LinkedHashMap<>();
        int[] n = {0};
        try (QemuVm source = QemuVm.source(dir, "src", 512, 384)) {
            for (int round = 0; round < runs; round++) {
                for (int channels : new int[] {1, 5}) {
                    for (String path : List.of("direct", "socat", "agents")) {
                        String incoming = dir + "/in" + (++n[0]) + ".sock";
                        Result r = migrate(dir, source, "dst" + n[0], incoming, channels, path, src, dst);
                        String key = path + (channels == 1 ? ", 1 channel" : ", multifd 4 channels");
                        results.computeIfAbsent(key, k -> new ArrayList<>()).add(r);
                        System.err.printf(Locale.ROOT, "%s: %.2f s, %.2f GB/s, downtime %d ms%n", key, r.seconds(),
                                r.gbPerSecond(), r.downtimeMillis());
                    }
                }
            }
        } finally {
            sourceRuntime.vertx().close().await();
            destinationRuntime.vertx().close().await();
        }
        System.out.println("| path | QEMU total time s | throughput GB/s | ratio to direct | downtime ms |");
        System.out.println("|---|---|---|---|---|");
        for (Map.Entry<String, List<Result>> e : results.entrySet()) {
            double seconds = median(e.getValue().stream().mapToDouble(Result::seconds).toArray());
            double gb = median(e.getValue().stream().mapToDouble(Result::gbPerSecond).toArray());
            double downtime = median(e.getValue().stream().mapToDouble(Result::downtimeMillis).toArray());
            String direct = e.getKey().replaceFirst("^[a-z]+", "direct");
            double directGb = median(results.get(direct).stream().mapToDouble(Result::gbPerSecond).toArray());
            System.out.printf(Locale.ROOT, "| %s | %.2f | %.2f | %.2f | %.0f |%n", e.getKey(), seconds, gb,
                    gb / directGb, downtime);
        }
    }

    private static Result migrate(Path dir, QemuVm source, String name, String incoming, int channels, String path,
            AgentVerticle src, AgentVerticle dst) throws Exception {
        JsonObject capabilities = new JsonObject().put("multifd", channels > 1);
        JsonObject parameters = new JsonObject().put("max-bandwidth", UNLIMITED);
        if (channels > 1) {
            parameters.put("multifd-channels", channels - 1);
        }
        Process socat = null;
        try (QemuVm destination = QemuVm.destination(dir, name, 512)) {
            destination.migrationSetup(capabilities, channels > 1
                    ? new JsonObject().put("multifd-channels", channels - 1) : new JsonObject());
            destination.execute("migrate-incoming", new JsonObject().put("uri", "unix:" + incoming));
            source.migrationSetup(capabilities, parameters);
            String uri = "unix:" + incoming;
            RelayRecord relay = null;
            if (path.equals("socat")) {
                String entry = incoming + ".socat";
                socat = new ProcessBuilder(RawBaseline.socat().toString(), "UNIX-LISTEN:" + entry + ",fork",
                        "UNIX-CONNECT:" + incoming).redirectErrorStream(true).start();
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (!Files.exists(Path.of(entry)) && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                uri = "unix:" + entry;
            } else if (path.equals("agents")) {
                relay = src.relays().start(RelayRequest.fromJson(new JsonObject()
                        .put("destination", "127.0.0.1:" + dst.streamPort()).put("target", "unix:" + incoming)
                        .put("channels", channels))).await();
                uri = relay.status().listen();
            }
            source.execute("migrate", new JsonObject().put("uri", uri));
            JsonObject end = source.migrationEnd(Duration.ofMinutes(5));
            if (!"completed".equals(end.getString("status"))) {
                throw new IllegalStateException(path + ": " + end.encode());
            }
            if (relay != null) {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (!relay.status().phase().isTerminal() && System.nanoTime() < deadline) {
                    Thread.sleep(10);
                }
                if (relay.status().phase() != RelayPhase.COMPLETED) {
                    throw new IllegalStateException("relay: " + relay.toJson().encode());
                }
            }
            double seconds = end.getLong("total-time") / 1000.0;
            long bytes = end.getJsonObject("ram").getLong("transferred");
            source.execute("cont");
            return new Result(seconds, bytes / seconds / 1e9, end.getLong("downtime", -1L));
        } finally {
            if (socat != null) {
                socat.destroy();
                socat.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    private static double median(double[] values) {
        double[] v = values.clone();
        Arrays.sort(v);
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }
}
