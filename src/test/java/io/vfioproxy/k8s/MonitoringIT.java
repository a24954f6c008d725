package io.vfioproxy.k8s;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.WebClient;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.migration.MigrationRecord;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationStatus;
import io.vfioproxy.relay.RelayPhase;
import io.vfioproxy.relay.RelayRecord;
import io.vfioproxy.relay.RelayRequest;
import io.vfioproxy.relay.SampleQemuStream;
import java.io.InputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Grafana dashboard and the PrometheusRule under k8s/monitoring: they parse, every metric their expressions
 * name is one the agents export (in a real scrape, after a migration and a relay of a QEMU stream), and the alerts
 * fire, and stay quiet, as promtool's rule tests say (Debian's prometheus package, which .ci/run installs).
 */
class MonitoringIT {

    private static final Path DASHBOARD = Path.of("k8s/monitoring/vmp-dashboard.json");
    private static final Path RULES = Path.of("k8s/monitoring/vmp-rules.yaml");
    private static final Path PROMTOOL = Path.of("/usr/bin/promtool");
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static final Set<String> KEYWORDS = Set.of("and", "or", "unless", "bool", "offset", "inf", "nan");

    @TempDir
    Path dir;
    private Vertx vertx;

    @BeforeEach
    void start() {
        vertx = Vertx.vertx();
    }

    @AfterEach
    void stop() {
        vertx.close().await();
    }

    /** The PrometheusRule as Kubernetes reads it (fabric8 8 has no model of the CRD: a generic resource). */
    private static GenericKubernetesResource resource() throws Exception {
        try (InputStream in = Files.newInputStream(RULES)) {
            return new KubernetesSerialization().unmarshal(in, GenericKubernetesResource.class);
        }
    }

    /** Its spec: {@code {"groups": [{"name", "rules": [{"alert", "expr", "for", "labels", "annotations"}]}]}}. */
    private static JsonObject spec() throws Exception {
        return new JsonObject(new KubernetesSerialization().asJson(resource().getAdditionalProperties().get("spec")));
    }

    private static List<JsonObject> rules() throws Exception {
        List<JsonObject> all = new ArrayList<>();
        for (Object g : spec().getJsonArray("groups")) {
            ((JsonObject) g).getJsonArray("rules").forEach(r -> all.add((JsonObject) r));
        }
        return all;
    }

    /** Every PromQL expression of the dashboard: its panels' targets and its variables' queries. */
    private static List<String> dashboardExpressions() throws Exception {
        JsonObject dashboard = new JsonObject(Files.readString(DASHBOARD));
        List<String> all = new ArrayList<>();
        for (Object p : dashboard.getJsonArray("panels")) {
            for (Object t : ((JsonObject) p).getJsonArray("targets", new JsonArray())) {
                all.add(((JsonObject) t).getString("expr"));
            }
        }
        for (Object v : dashboard.getJsonObject("templating").getJsonArray("list")) {
            JsonObject variable = (JsonObject) v;
            if ("query".equals(variable.getString("type"))) {
                // Grafana's label_values(metric, label): the metric is the expression.
                Matcher m = Pattern.compile("label_values\\(([^,]+),").matcher(variable.getString("definition"));
                assertThat(m.find()).as(variable.encode()).isTrue();
                all.add(m.group(1).strip());
            }
        }
        return all;
    }

    /** The metric names in a PromQL expression: not functions, keywords, label names, strings or durations. */
    static Set<String> metricNames(String expr) {
        String s = expr.replaceAll("\"(\\\\.|[^\"\\\\])*\"", "\"\"")
                .replaceAll("\\{[^}]*}", " ")
                .replaceAll("\\[[^]]*]", " ")
                .replaceAll("\\b(by|without|on|ignoring|group_left|group_right)\\s*\\([^)]*\\)", " ");
        Set<String> names = new TreeSet<>();
        Matcher m = Pattern.compile("(?<![\\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\\s*\\()?").matcher(s);
        while (m.find()) {
            if (m.group(2) == null && !KEYWORDS.contains(m.group(1).toLowerCase())) {
                names.add(m.group(1));
            }
        }
        return names;
    }

    @Test
    void theExtractorFindsMetricsAndNothingElse() {
        assertThat(metricNames("(vmp_device_state != 2) and on (agent, device) (vmp_device_holder == 0)"))
                .containsExactly("vmp_device_holder", "vmp_device_state");
        assertThat(metricNames("histogram_quantile(0.99, sum by (le) (rate(vmp_migration_downtime_seconds_bucket"
                + "{agent=~\"$agent\"}[$__rate_interval])))")).containsExactly("vmp_migration_downtime_seconds_bucket");
        assertThat(metricNames("increase(vmp_migrations_total{outcome=\"failed\"}[10m]) > 0"))
                .containsExactly("vmp_migrations_total");
    }

    @Test
    void everyMetricTheDashboardAndTheAlertsNameIsInARealScrape() throws Exception {
        GenericKubernetesResource resource = resource();
        assertThat(resource.getApiVersion()).isEqualTo("monitoring.coreos.com/v1");
        assertThat(resource.getKind()).isEqualTo("PrometheusRule");
        List<JsonObject> rules = rules();
        assertThat(rules).extracting(r -> r.getString("alert")).containsExactlyInAnyOrder("VfioMigrationFailed",
                "VfioRelayFailed", "VfioDeviceStoppedUnheld", "VfioMigrationDowntimeHigh", "VfioAgentNotReady",
                "VfioClusterAgentMissing");
        for (JsonObject r : rules) {
            assertThat(r.getJsonObject("labels").getMap()).as(r.getString("alert")).containsKey("severity");
            assertThat(r.getJsonObject("annotations").getMap()).as(r.getString("alert"))
                    .containsKeys("summary", "description");
        }
        Set<String> named = new TreeSet<>();
        rules.forEach(r -> named.addAll(metricNames(r.getString("expr"))));
        dashboardExpressions().forEach(e -> named.addAll(metricNames(e)));
        assertThat(named).as("the metrics named").hasSizeGreaterThan(10);

        Set<String> scraped = new TreeSet<>();
        List<String> scrapes = scrapeAfterAMigrationAndARelay();
        // What the device alert reads: the source's device stopped on purpose (its state moved), and ready agents.
        assertThat(scrapes.get(0)).containsPattern("vmp_device_state\\{agent=\"src\",device=\"gpu0\"} 1(\\.0)?\n")
                .containsPattern("vmp_device_holder\\{agent=\"src\",device=\"gpu0\"} 3(\\.0)?\n")
                .containsPattern("vmp_agent_ready\\{agent=\"src\"} 1(\\.0)?\n")
                .containsPattern("vmp_cluster_agents\\{agent=\"src\"} 0(\\.0)?\n");
        assertThat(scrapes.get(1)).containsPattern("vmp_device_state\\{agent=\"dst\",device=\"gpu0\"} 2(\\.0)?\n")
                .containsPattern("vmp_device_holder\\{agent=\"dst\",device=\"gpu0\"} 0(\\.0)?\n");
        scrapes.forEach(text -> text.lines().filter(l -> !l.isBlank() && !l.startsWith("#"))
                .map(l -> l.split("[{ ]", 2)[0]).forEach(scraped::add));
        assertThat(scraped).as("what the agents export").containsAll(named);
    }

    /** Both agents' /metrics once a migration and a relay of a QEMU stream have run between them. */
    private List<String> scrapeAfterAMigrationAndARelay() throws Exception {
        AgentVerticle destination = LoopbackAgent.named("dst")
                .device(LoopbackAgent.simulated("gpu0", 8L << 20, 1))
                .merge("relay", new JsonObject().put("allowedTargets", new JsonArray().add("unix:" + dir + "/")))
                .start(vertx);
        AgentVerticle source = LoopbackAgent.named("src").device(LoopbackAgent.simulated("gpu0", 8L << 20, 2))
                .start(vertx);
        MigrationRecord migration = source.migrations().migrate(MigrationRequest.fromJson(new JsonObject()
                .put("device", "gpu0").put("destination", "127.0.0.1:" + destination.streamPort()))).record();
        await("the migration ended").atMost(WAIT)
                .until(() -> migration.status().outcome() != MigrationStatus.Outcome.ACTIVE);
        assertThat(migration.status().outcome()).isEqualTo(MigrationStatus.Outcome.COMPLETED);

        Path target = dir.resolve("target.sock");
        ServerSocketChannel hypervisorB = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        hypervisorB.bind(UnixDomainSocketAddress.of(target));
        RelayRecord relay = source.relays().start(RelayRequest.fromJson(new JsonObject()
                .put("destination", "127.0.0.1:" + destination.streamPort()).put("target", "unix:" + target)))
                .await();
        CompletableFuture<Long> received = CompletableFuture.supplyAsync(() -> {
            try (SocketChannel in = hypervisorB.accept()) {
                long n = 0;
                ByteBuffer buf = ByteBuffer.allocate(64 << 10);
                for (int r; (r = in.read(buf.clear())) >= 0;) {
                    n += r;
                }
                return n;
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        byte[] stream = SampleQemuStream.bytes();
        try (SocketChannel hypervisorA = SocketChannel.open(UnixDomainSocketAddress.of(
                relay.status().listen().substring("unix:".length())))) {
            ByteBuffer out = ByteBuffer.wrap(stream);
            while (out.hasRemaining()) {
                hypervisorA.write(out);
            }
            hypervisorA.shutdownOutput();
            assertThat(received.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEqualTo(stream.length);
            hypervisorA.read(ByteBuffer.allocate(1));
        }
        hypervisorB.close();
        await("the relay ended").atMost(WAIT).until(() -> relay.status().phase().isTerminal());
        assertThat(relay.status().phase()).as(relay.toJson().encode()).isEqualTo(RelayPhase.COMPLETED);

        WebClient http = WebClient.create(vertx);
        List<String> scrapes = new ArrayList<>();
        for (AgentVerticle agent : List.of(source, destination)) {
            scrapes.add(http.get(agent.apiPort(), "127.0.0.1", "/metrics").send().await().bodyAsString());
        }
        return scrapes;
    }

    @Test
    void theAlertsFireOnWhatTheyAreForAndOnNothingElse() throws Exception {
        boolean present = Files.isExecutable(PROMTOOL);
        if (!present) {
            System.out.println("MonitoringIT: the promtool rule tests skipped: " + PROMTOOL + " is needed (Debian's"
                    + " prometheus package; .ci/run installs it)");
        }
        assumeTrue(present, "promtool is not installed");
        // promtool reads a plain rule file: the PrometheusRule's spec is one (JSON is YAML).
        Path rules = dir.resolve("rules.json");
        Files.writeString(rules, spec().encode());
        assertThat(promtool("check", "rules", rules.toString())).contains("SUCCESS");

        Path tests = dir.resolve("tests.json");
        Files.writeString(tests, new JsonObject()
                .put("rule_files", new JsonArray().add(rules.toString()))
                .put("evaluation_interval", "1m")
                .put("tests", new JsonArray().add(new JsonObject()
                        .put("interval", "1m")
                        .put("input_series", new JsonArray()
                                .add(series("vmp_migrations_total{agent=\"a\",role=\"source\",outcome=\"failed\"}",
                                        "0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"))
                                .add(series("vmp_migrations_total{agent=\"a\",role=\"source\",outcome=\"completed\"}",
                                        "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20"))
                                .add(series("vmp_relays_total{agent=\"a\",role=\"source\",outcome=\"failed\"}", "0x20"))
                                // gpu0 stopped with nobody holding it; gpu1 stopped, its state migrated away;
                                // gpu2 stopped by a migration under way; gpu3 running.
                                .add(series("vmp_device_state{agent=\"a\",device=\"gpu0\"}", "2 2 1x18"))
                                .add(series("vmp_device_holder{agent=\"a\",device=\"gpu0\"}", "0x20"))
                                .add(series("vmp_device_state{agent=\"a\",device=\"gpu1\"}", "1x20"))
                                .add(series("vmp_device_holder{agent=\"a\",device=\"gpu1\"}", "3x20"))
                                .add(series("vmp_device_state{agent=\"a\",device=\"gpu2\"}", "3x20"))
                                .add(series("vmp_device_holder{agent=\"a\",device=\"gpu2\"}", "1x20"))
                                .add(series("vmp_device_state{agent=\"a\",device=\"gpu3\"}", "2x20"))
                                .add(series("vmp_device_holder{agent=\"a\",device=\"gpu3\"}", "0x20"))
                                .add(series("vmp_migration_downtime_seconds_max{agent=\"a\"}", "0.012x5 0.8x15"))
                                .add(series("vmp_migration_downtime_seconds_max{agent=\"b\"}", "0.3x20"))
                                .add(series("vmp_agent_ready{agent=\"a\"}", "1 1 0x18"))
                                .add(series("vmp_agent_ready{agent=\"b\"}", "1x20"))
                                // a cut off from b and c after two minutes; d not clustered.
                                .add(series("vmp_cluster_agents{agent=\"a\"}", "3 3 1x18"))
                                .add(series("vmp_cluster_agents{agent=\"b\"}", "3x20"))
                                .add(series("vmp_cluster_agents{agent=\"c\"}", "3x20"))
                                .add(series("vmp_cluster_agents{agent=\"d\"}", "0x20")))
                        .put("alert_rule_test", new JsonArray()
                                .add(expect("VfioMigrationFailed", "5m", new JsonObject().put("agent", "a")
                                        .put("role", "source").put("outcome", "failed").put("severity", "warning"),
                                        "A VFIO migration failed on agent a (source)", null))
                                .add(quiet("VfioMigrationFailed", "2m"))
                                .add(quiet("VfioRelayFailed", "10m"))
                                .add(quiet("VfioDeviceStoppedUnheld", "3m"))
                                .add(expect("VfioDeviceStoppedUnheld", "6m", new JsonObject().put("agent", "a")
                                        .put("device", "gpu0").put("severity", "critical"),
                                        "Device gpu0 on agent a is out of RUNNING with no migration holding it", "1"))
                                .add(quiet("VfioMigrationDowntimeHigh", "3m"))
                                .add(expect("VfioMigrationDowntimeHigh", "8m", new JsonObject().put("agent", "a")
                                        .put("severity", "warning"),
                                        "A migration on agent a stopped its devices for 800ms", null))
                                .add(quiet("VfioAgentNotReady", "5m"))
                                .add(expect("VfioAgentNotReady", "9m", new JsonObject().put("agent", "a")
                                        .put("severity", "critical"), "Agent a is not ready", null))
                                .add(quiet("VfioClusterAgentMissing", "3m"))
                                .add(expect("VfioClusterAgentMissing", "5m", new JsonObject().put("agent", "a")
                                        .put("severity", "warning"),
                                        "Agent a sees 1 agents in its cluster, fewer than run", null)))))
                .encode());
        assertThat(promtool("test", "rules", tests.toString())).contains("SUCCESS");
    }

    private static JsonObject series(String name, String values) {
        return new JsonObject().put("series", name).put("values", values);
    }

    /**
     * At {@code at}, {@code alert} fires once with exactly {@code labels}, its summary rendered as {@code summary}
     * and its description as the rule's with {@code value} for its {@code {{ $value }}}.
     */
    private JsonObject expect(String alert, String at, JsonObject labels, String summary, String value)
            throws Exception {
        String description = rules().stream().filter(r -> alert.equals(r.getString("alert"))).findFirst()
                .orElseThrow().getJsonObject("annotations").getString("description");
        if (value != null) {
            description = description.replace("{{ $value }}", value);
        }
        return new JsonObject().put("eval_time", at).put("alertname", alert).put("exp_alerts", new JsonArray()
                .add(new JsonObject().put("exp_labels", labels).put("exp_annotations", new JsonObject()
                        .put("summary", summary).put("description", description))));
    }

    /** At {@code at}, {@code alert} does not fire. */
    private static JsonObject quiet(String alert, String at) {
        return new JsonObject().put("eval_time", at).put("alertname", alert).put("exp_alerts", new JsonArray());
    }

    /** Runs promtool; fails the test with its output unless it exits 0. */
    private static String promtool(String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of(PROMTOOL.toString()));
        command.addAll(List.of(args));
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS)).as("promtool ended").isTrue();
        assertThat(p.exitValue()).as(String.join(" ", command) + ":\n" + out).isZero();
        return out;
    }
}
