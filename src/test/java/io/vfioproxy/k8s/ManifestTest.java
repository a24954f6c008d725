package io.vfioproxy.k8s;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HTTPGetAction;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.apps.DaemonSet;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyIngressRule;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyPort;
import io.fabric8.kubernetes.api.model.rbac.Role;
import io.fabric8.kubernetes.api.model.rbac.RoleBinding;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.PemTrustOptions;
import io.vertx.ext.web.client.WebClient;
import io.vertx.ext.web.client.WebClientOptions;
import io.vfioproxy.agent.AgentConfig;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.api.ApiOptions;
import io.vfioproxy.cluster.ClusterOptions;
import io.vfioproxy.relay.RelayOptions;
import io.vfioproxy.security.SecurityOptions;
import io.vfioproxy.security.TrialCredentials;
import io.vfioproxy.transport.TransportOptions;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * k8s/ rendered as Kubernetes gets it ({@code kubectl kustomize}), base and overlays, every object read with
 * fabric8's models; the agent each renders configures is checked by the agent's own parsers: the ConfigMap is
 * conf/agent.json, every variable the DaemonSet sets names a key, the pod's agent is secure and clustered over
 * the headless Service, every file it names is mounted from a Secret, and the probes answer on a real agent.
 */
class ManifestTest {

    private static final Pattern REFERENCE = Pattern.compile("\\$\\(([A-Za-z_][A-Za-z0-9_]*)\\)");
    /** What the downward API gives a pod on node-a. */
    private static final Map<String, String> FIELDS = Map.of("spec.nodeName", "node-a", "status.podIP", "10.0.0.7",
            "metadata.namespace", "vfio-migration-proxy");

    private static Map<String, List<HasMetadata>> rendered;

    @BeforeAll
    static void render() throws Exception {
        String version = kustomizeVersion();
        assumeTrue(version != null, "kubectl with kustomize v4 or later is needed");
        rendered = new LinkedHashMap<>();
        for (String dir : List.of("k8s", "k8s/overlays/relay", "k8s/overlays/api-discovery", "k8s/monitoring")) {
            rendered.put(dir, parse(kubectl("kustomize", dir)));
        }
    }

    /** kubectl's kustomize version if it is v4 or later (older ones cannot render overlays as written), else null. */
    private static String kustomizeVersion() throws Exception {
        String out;
        try {
            out = kubectl("version", "--client");
        } catch (IOException e) {
            System.out.println("ManifestTest skipped: no kubectl on the PATH (" + e.getMessage() + ")");
            return null;
        }
        Matcher m = Pattern.compile("Kustomize Version: v(\\d+)\\S*").matcher(out);
        if (!m.find() || Integer.parseInt(m.group(1)) < 4) {
            System.out.println("ManifestTest skipped: kubectl's kustomize is older than v4: " + out.strip());
            return null;
        }
        return m.group();
    }

    private static String kubectl(String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of("kubectl"));
        command.addAll(List.of(args));
        Path err = Files.createTempFile("kubectl", ".err");
        Process p = new ProcessBuilder(command).redirectError(err.toFile()).start();
        byte[] out = p.getInputStream().readAllBytes();
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).as(String.join(" ", command)).isTrue();
        String error = Files.readString(err);
        Files.delete(err);
        assertThat(p.exitValue()).as(String.join(" ", command) + ": " + error).isZero();
        return new String(out, StandardCharsets.UTF_8);
    }

    private static List<HasMetadata> parse(String yaml) {
        Object parsed = new KubernetesSerialization().unmarshal(new ByteArrayInputStream(
                yaml.getBytes(StandardCharsets.UTF_8)));
        return parsed instanceof List<?> list ? list.stream().map(HasMetadata.class::cast).toList()
                : List.of((HasMetadata) parsed);
    }

    private static <T extends HasMetadata> List<T> all(String dir, Class<T> type) {
        return rendered.get(dir).stream().filter(type::isInstance).map(type::cast).toList();
    }

    private static <T extends HasMetadata> T one(String dir, Class<T> type) {
        List<T> found = all(dir, type);
        assertThat(found).as(dir + " renders one " + type.getSimpleName()).hasSize(1);
        return found.get(0);
    }

    private static Container agent(String dir) {
        return one(dir, DaemonSet.class).getSpec().getTemplate().getSpec().getContainers().get(0);
    }

    /** The value the kubelet gives {@code v}: downward-API fields, and $(NAME) of earlier variables expanded. */
    private static String value(EnvVar v, Map<String, String> earlier) {
        if (v.getValueFrom() != null) {
            String field = v.getValueFrom().getFieldRef().getFieldPath();
            assertThat(FIELDS).as("the downward API field " + field).containsKey(field);
            return FIELDS.get(field);
        }
        Matcher m = REFERENCE.matcher(v.getValue() == null ? "" : v.getValue());
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            assertThat(earlier).as(v.getName() + " refers to $(" + m.group(1) + "), set before it").containsKey(
                    m.group(1));
            m.appendReplacement(out, Matcher.quoteReplacement(earlier.get(m.group(1))));
        }
        return m.appendTail(out).toString();
    }

    /** The configuration the agent of {@code dir}'s pod on node-a starts with, read as the agent reads it. */
    private static JsonObject podConfiguration(String dir) {
        ConfigMap map = one(dir, ConfigMap.class);
        Map<String, String> env = new LinkedHashMap<>();
        for (EnvVar v : agent(dir).getEnv()) {
            env.put(v.getName(), value(v, env));
        }
        JsonObject file = new JsonObject(map.getData().get("agent.json"));
        // Throws, naming it, for a variable that names no key: the agent would stop at start.
        return AgentConfig.applyEnvironment(AgentConfig.defaults().mergeIn(file, true), env);
    }

    private static Optional<Volume> volumeAt(String dir, String file) {
        PodSpec pod = one(dir, DaemonSet.class).getSpec().getTemplate().getSpec();
        return agent(dir).getVolumeMounts().stream()
                .filter(m -> file.equals(m.getMountPath()) || file.startsWith(m.getMountPath() + "/"))
                .max((a, b) -> Integer.compare(a.getMountPath().length(), b.getMountPath().length()))
                .flatMap(m -> pod.getVolumes().stream().filter(v -> v.getName().equals(m.getName())).findFirst());
    }

    private static Optional<String> secretHolding(String dir, String file) {
        return volumeAt(dir, file).map(Volume::getSecret).map(s -> s.getSecretName());
    }

    private static int containerPort(String dir, String name) {
        return agent(dir).getPorts().stream().filter(p -> name.equals(p.getName())).map(ContainerPort::getContainerPort)
                .findFirst().orElseThrow(() -> new AssertionError("no container port named " + name));
    }

    @Test
    void everyObjectParsesIntoItsModelAndTheBaseHasWhatANodeAgentNeeds() {
        for (Map.Entry<String, List<HasMetadata>> e : rendered.entrySet()) {
            for (HasMetadata o : e.getValue()) {
                boolean custom = o.getApiVersion().startsWith("monitoring.coreos.com/");
                assertThat(o instanceof GenericKubernetesResource).as(e.getKey() + ": " + o.getKind()
                        + " parses into fabric8's model (only the Prometheus Operator's kinds are not in it)")
                        .isEqualTo(custom);
                if (!o.getKind().equals("Namespace")) {
                    assertThat(o.getMetadata().getNamespace()).as(o.getKind()).isEqualTo("vfio-migration-proxy");
                }
            }
        }
        assertThat(rendered.get("k8s").stream().map(HasMetadata::getKind)).containsExactlyInAnyOrder("Namespace",
                "ServiceAccount", "ConfigMap", "Service", "DaemonSet", "NetworkPolicy", "PodMonitor");
        assertThat(rendered.get("k8s/monitoring").stream().map(HasMetadata::getKind))
                .containsExactlyInAnyOrder("ConfigMap", "PrometheusRule");
    }

    @Test
    void theConfigMapIsConfsConfigurationAndTheDaemonSetMountsIt() throws Exception {
        JsonObject conf = new JsonObject(Files.readString(Path.of("conf/agent.json")));
        for (String dir : List.of("k8s", "k8s/overlays/relay", "k8s/overlays/api-discovery")) {
            ConfigMap map = one(dir, ConfigMap.class);
            assertThat(new JsonObject(map.getData().get("agent.json"))).as(dir).isEqualTo(conf);
            List<String> args = agent(dir).getArgs();
            String path = args.get(args.indexOf("--config") + 1);
            Volume config = volumeAt(dir, path).orElseThrow();
            assertThat(config.getConfigMap().getName()).as("the generated ConfigMap, by its hashed name")
                    .isEqualTo(map.getMetadata().getName());
            assertThat(path).endsWith("/agent.json");
        }
    }

    @Test
    void thePodsAgentIsSecureClusteredAndNamedAfterItsNode() {
        JsonObject c = podConfiguration("k8s");
        assertThat(c.getJsonObject("agent").getString("name")).isEqualTo("node-a");
        assertThat(c.getJsonArray("devices")).as("no simulated devices on a node").isEmpty();
        SecurityOptions security = SecurityOptions.fromJson(c.getJsonObject("security"));
        assertThat(security.secure()).isTrue();
        assertThat(security.metricsPublic()).isFalse();
        for (String file : List.of(security.certPath(), security.keyPath(), security.caPath())) {
            assertThat(secretHolding("k8s", file)).as(file).contains("vfio-migration-proxy-tls");
        }
        for (String file : List.of(security.readTokens(), security.controlTokens())) {
            assertThat(secretHolding("k8s", file)).as(file).contains("vfio-migration-proxy-tokens");
        }
        // A Secret's files are replaced as it changes only where it is mounted whole, which the reload relies on.
        assertThat(agent("k8s").getVolumeMounts()).allMatch(m -> m.getSubPath() == null);

        ClusterOptions cluster = ClusterOptions.fromJson(c.getJsonObject("cluster"));
        assertThat(cluster.enabled()).isTrue();
        assertThat(cluster.host()).as("the pod IP").isEqualTo("10.0.0.7");
        assertThat(cluster.kubernetes().enabled()).isTrue();
        Service service = one("k8s", Service.class);
        assertThat(cluster.kubernetes().serviceDns()).isEqualTo(service.getMetadata().getName() + "."
                + service.getMetadata().getNamespace() + ".svc.cluster.local");
        assertThat(service.getSpec().getClusterIP()).as("headless").isEqualTo("None");
        assertThat(service.getSpec().getPublishNotReadyAddresses()).as("found before it is ready").isTrue();
        Map<String, String> podLabels = one("k8s", DaemonSet.class).getSpec().getTemplate().getMetadata()
                .getLabels();
        assertThat(podLabels).containsAllEntriesOf(service.getSpec().getSelector());

        // The ports the agent listens on are the ports the pod, the Service and the policy name.
        int stream = TransportOptions.fromJson(c.getJsonObject("stream")).port();
        int api = ApiOptions.fromJson(c.getJsonObject("api")).port();
        assertThat(containerPort("k8s", "stream")).isEqualTo(stream);
        assertThat(containerPort("k8s", "api")).isEqualTo(api);
        assertThat(containerPort("k8s", "cluster")).isEqualTo(cluster.port());
        assertThat(containerPort("k8s", "eventbus")).isEqualTo(cluster.eventBusPort());
        assertThat(service.getSpec().getPorts()).extracting(p -> p.getPort())
                .contains(stream, cluster.port(), cluster.eventBusPort());
    }

    @Test
    void onlyAgentsReachTheStreamAndClusterPorts() {
        JsonObject c = podConfiguration("k8s");
        ClusterOptions cluster = ClusterOptions.fromJson(c.getJsonObject("cluster"));
        List<Integer> agentOnly = List.of(TransportOptions.fromJson(c.getJsonObject("stream")).port(),
                cluster.port(), cluster.eventBusPort());
        NetworkPolicy policy = one("k8s", NetworkPolicy.class);
        Map<String, String> podLabels = one("k8s", DaemonSet.class).getSpec().getTemplate().getMetadata()
                .getLabels();
        assertThat(podLabels).containsAllEntriesOf(policy.getSpec().getPodSelector().getMatchLabels());
        assertThat(policy.getSpec().getPolicyTypes()).contains("Ingress");
        Map<Integer, List<NetworkPolicyIngressRule>> rulesByPort = new HashMap<>();
        for (NetworkPolicyIngressRule rule : policy.getSpec().getIngress()) {
            assertThat(rule.getPorts()).as("every rule names its ports").isNotEmpty();
            for (NetworkPolicyPort p : rule.getPorts()) {
                rulesByPort.computeIfAbsent(p.getPort().getIntVal(), k -> new ArrayList<>()).add(rule);
            }
        }
        for (int port : agentOnly) {
            assertThat(rulesByPort.get(port)).as("port " + port).isNotEmpty().allSatisfy(rule -> {
                assertThat(rule.getFrom()).isNotEmpty().allSatisfy(peer -> {
                    assertThat(peer.getNamespaceSelector()).isNull();
                    assertThat(peer.getIpBlock()).isNull();
                    assertThat(podLabels).containsAllEntriesOf(peer.getPodSelector().getMatchLabels());
                });
            });
        }
    }

    @Test
    void theContainerIsNotPrivilegedAndHasWhatVfioNeeds() {
        Container agent = agent("k8s");
        assertThat(agent.getSecurityContext().getPrivileged()).isFalse();
        assertThat(agent.getSecurityContext().getAllowPrivilegeEscalation()).isFalse();
        assertThat(agent.getSecurityContext().getCapabilities().getDrop()).containsExactly("ALL");
        assertThat(agent.getSecurityContext().getCapabilities().getAdd()).containsExactly("IPC_LOCK");
        assertThat(volumeAt("k8s", "/dev/vfio").map(Volume::getHostPath).map(h -> h.getPath())).contains("/dev/vfio");
        assertThat(volumeAt("k8s", "/sys").map(Volume::getHostPath).map(h -> h.getPath())).contains("/sys");
        assertThat(agent.getVolumeMounts().stream().filter(m -> m.getMountPath().equals("/sys"))
                .map(VolumeMount::getReadOnly)).containsExactly(true);
        assertThat(agent.getResources().getRequests()).containsKeys("cpu", "memory");
        assertThat(agent.getResources().getLimits()).containsKey("memory");
        PodSpec pod = one("k8s", DaemonSet.class).getSpec().getTemplate().getSpec();
        // The agent waits up to 30 s for a device while it ends its migrations on SIGTERM.
        assertThat(pod.getTerminationGracePeriodSeconds()).isGreaterThan(30L);
        ServiceAccount account = one("k8s", ServiceAccount.class);
        assertThat(pod.getServiceAccountName()).isEqualTo(account.getMetadata().getName());
        assertThat(pod.getAutomountServiceAccountToken()).as("DNS discovery needs no API token").isFalse();
        assertThat(all("k8s", Role.class)).as("DNS discovery needs no role").isEmpty();
    }

    @Test
    void theJournalOutlivesThePod() {
        String journal = podConfiguration("k8s").getJsonObject("migration").getString("journalDir");
        assertThat(journal).isNotBlank();
        Volume volume = volumeAt("k8s", journal).orElseThrow(() -> new AssertionError("no mount holds " + journal));
        assertThat(volume.getHostPath()).as("the journal is on the node, not in the container").isNotNull();
    }

    @Test
    void theRelayOverlayMountsTheHypervisorsSocketsAndAllowsOnlyThem() {
        JsonObject c = podConfiguration("k8s/overlays/relay");
        RelayOptions relay = RelayOptions.fromJson(c.getJsonObject("relay"));
        assertThat(relay.allowedTargets()).containsExactly("unix:/var/run/kubevirt/");
        String targets = relay.allowedTargets().get(0).substring("unix:".length());
        assertThat(volumeAt("k8s/overlays/relay", targets).map(Volume::getHostPath).map(h -> h.getPath()))
                .contains("/var/run/kubevirt");
        assertThat(volumeAt("k8s/overlays/relay", relay.listenDir()).map(Volume::getHostPath)).isPresent();
        assertThat(relay.socketMode()).isEqualTo(0600);
        assertThat(agent("k8s/overlays/relay").getSecurityContext().getCapabilities().getAdd())
                .as("to give a listen socket to QEMU's user").contains("CHOWN");
        // The base's settings are all still there.
        assertThat(ClusterOptions.fromJson(c.getJsonObject("cluster")).enabled()).isTrue();
        assertThat(SecurityOptions.fromJson(c.getJsonObject("security")).secure()).isTrue();
    }

    @Test
    void apiDiscoveryGetsTheLeastRoleItNeeds() {
        String dir = "k8s/overlays/api-discovery";
        ClusterOptions cluster = ClusterOptions.fromJson(podConfiguration(dir).getJsonObject("cluster"));
        assertThat(cluster.kubernetes().serviceDns()).isEmpty();
        assertThat(cluster.kubernetes().serviceName()).isEqualTo(one(dir, Service.class).getMetadata().getName());
        assertThat(cluster.kubernetes().namespace()).isEqualTo("vfio-migration-proxy");
        Role role = one(dir, Role.class);
        assertThat(role.getRules()).allSatisfy(r -> assertThat(r.getVerbs()).containsExactlyInAnyOrder("get",
                "list"));
        assertThat(role.getRules()).flatExtracting(r -> r.getResources()).contains("endpoints");
        RoleBinding binding = one(dir, RoleBinding.class);
        assertThat(binding.getRoleRef().getName()).isEqualTo(role.getMetadata().getName());
        assertThat(binding.getSubjects()).singleElement().satisfies(s -> {
            assertThat(s.getKind()).isEqualTo("ServiceAccount");
            assertThat(s.getName()).isEqualTo(one(dir, ServiceAccount.class).getMetadata().getName());
            assertThat(s.getNamespace()).isEqualTo("vfio-migration-proxy");
        });
        assertThat(one(dir, DaemonSet.class).getSpec().getTemplate().getSpec().getAutomountServiceAccountToken())
                .isTrue();
    }

    @Test
    void thePodMonitorScrapesTheApiPortWithAReadToken() {
        GenericKubernetesResource monitor = all("k8s", GenericKubernetesResource.class).stream()
                .filter(r -> r.getKind().equals("PodMonitor")).findFirst().orElseThrow();
        Map<String, Object> endpoint = monitor.get("spec", "podMetricsEndpoints", 0);
        assertThat(endpoint.get("port")).isEqualTo("api");
        assertThat(endpoint.get("path")).isEqualTo("/metrics");
        assertThat(endpoint.get("scheme")).isEqualTo("https");
        String tokens = monitor.get("spec", "podMetricsEndpoints", 0, "authorization", "credentials", "name");
        assertThat(tokens).isEqualTo(secretHolding("k8s", "/etc/vfio-migration-proxy/tokens/read").orElseThrow());
        assertThat((String) monitor.get("spec", "podMetricsEndpoints", 0, "authorization", "credentials", "key"))
                .isEqualTo("read");
    }

    @Test
    void theProbesAnswerOnARealAgentWithoutAToken(@TempDir Path dir) throws Exception {
        Container agent = agent("k8s");
        int api = ApiOptions.fromJson(podConfiguration("k8s").getJsonObject("api")).port();
        Vertx vertx = Vertx.vertx();
        try {
            TrialCredentials trial = TrialCredentials.create(dir, List.of("node-a"), 1);
            AgentVerticle running = LoopbackAgent.named("node-a").secure(trial).start(vertx);
            WebClient client = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                    .setDefaultPort(running.apiPort()).setSsl(true).setVerifyHost(false)
                    .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString())));
            for (HTTPGetAction probe : List.of(agent.getStartupProbe().getHttpGet(),
                    agent.getLivenessProbe().getHttpGet(), agent.getReadinessProbe().getHttpGet())) {
                assertThat(probe.getScheme()).isEqualTo("HTTPS");
                assertThat(probe.getPort().getStrVal()).isEqualTo("api");
                assertThat(containerPort("k8s", "api")).isEqualTo(api);
                int status = client.get(probe.getPath()).send().await().statusCode();
                assertThat(status).as(probe.getPath() + " without a token").isEqualTo(200);
            }
            assertThat(agent.getLivenessProbe().getHttpGet().getPath()).isEqualTo("/healthz");
            assertThat(agent.getReadinessProbe().getHttpGet().getPath()).isEqualTo("/readyz");
        } finally {
            vertx.close().await();
        }
    }

    @Test
    void theShippedDefaultsAreSecureToo() throws Exception {
        JsonObject shipped = new JsonObject(Files.readString(Path.of("conf/agent.json")));
        assertThat(SecurityOptions.fromJson(shipped.getJsonObject("security")).secure()).isTrue();
    }
}
