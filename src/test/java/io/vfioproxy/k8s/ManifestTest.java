package io.vfioproxy.k8s;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.apps.DaemonSet;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentConfig;
import io.vfioproxy.security.SecurityOptions;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * k8s/agent.yaml read as Kubernetes reads it: the agent it configures is secure, and every file its configuration
 * names is one the DaemonSet mounts from a Secret (an agent missing one would stop at start).
 */
class ManifestTest {

    private static List<HasMetadata> items;
    private static DaemonSet daemonSet;
    private static JsonObject config;

    @BeforeAll
    static void read() throws Exception {
        try (InputStream in = Files.newInputStream(Path.of("k8s/agent.yaml"))) {
            // A multi-document YAML comes back as the list of its documents.
            Object parsed = new KubernetesSerialization().unmarshal(in);
            items = parsed instanceof List<?> list ? list.stream().map(HasMetadata.class::cast).toList()
                    : List.of((HasMetadata) parsed);
        }
        daemonSet = items.stream().filter(DaemonSet.class::isInstance).map(DaemonSet.class::cast).findFirst()
                .orElseThrow();
        ConfigMap map = items.stream().filter(ConfigMap.class::isInstance).map(ConfigMap.class::cast).findFirst()
                .orElseThrow();
        config = new JsonObject(map.getData().get("agent.json"));
    }

    private static Container agent() {
        return daemonSet.getSpec().getTemplate().getSpec().getContainers().get(0);
    }

    /** The Secret mounted where {@code file} is, if any. */
    private static Optional<String> secretHolding(String file) {
        PodSpec pod = daemonSet.getSpec().getTemplate().getSpec();
        for (VolumeMount m : agent().getVolumeMounts()) {
            if (file.startsWith(m.getMountPath() + "/") && m.getSubPath() == null) {
                Volume v = pod.getVolumes().stream().filter(x -> x.getName().equals(m.getName())).findFirst()
                        .orElseThrow();
                return Optional.ofNullable(v.getSecret()).map(s -> s.getSecretName());
            }
        }
        return Optional.empty();
    }

    @Test
    void theAgentIsSecureWithEveryFileFromASecret() {
        JsonObject merged = AgentConfig.applyEnvironment(AgentConfig.defaults().mergeIn(config, true), Map.of());
        SecurityOptions security = SecurityOptions.fromJson(merged.getJsonObject("security"));
        assertThat(security.secure()).isTrue();
        assertThat(security.metricsPublic()).isFalse();
        assertThat(secretHolding(security.certPath())).contains("vfio-migration-proxy-tls");
        assertThat(secretHolding(security.keyPath())).contains("vfio-migration-proxy-tls");
        assertThat(secretHolding(security.caPath())).contains("vfio-migration-proxy-tls");
        assertThat(secretHolding(security.readTokens())).contains("vfio-migration-proxy-tokens");
        assertThat(secretHolding(security.controlTokens())).contains("vfio-migration-proxy-tokens");
        // A Secret's files are replaced as it changes only where it is mounted whole, which the reload relies on.
        assertThat(agent().getVolumeMounts()).allMatch(m -> m.getSubPath() == null);
    }

    @Test
    void theAgentReadsTheConfigurationTheManifestMountsAndProbesOverTls() {
        List<String> args = agent().getArgs();
        String path = args.get(args.indexOf("--config") + 1);
        assertThat(agent().getVolumeMounts()).anyMatch(m -> path.startsWith(m.getMountPath() + "/")
                && m.getName().equals("config"));
        assertThat(agent().getLivenessProbe().getHttpGet().getScheme()).isEqualTo("HTTPS");
        assertThat(agent().getLivenessProbe().getHttpGet().getPath()).isEqualTo("/healthz");
        assertThat(agent().getReadinessProbe().getHttpGet().getScheme()).isEqualTo("HTTPS");
        assertThat(agent().getReadinessProbe().getHttpGet().getPath()).isEqualTo("/readyz");
        assertThat(daemonSet.getSpec().getTemplate().getSpec().getTerminationGracePeriodSeconds()).isPositive();
    }

    @Test
    void theJournalOutlivesThePod() {
        JsonObject merged = AgentConfig.defaults().mergeIn(config, true);
        String journal = merged.getJsonObject("migration").getString("journalDir");
        assertThat(journal).isNotBlank();
        PodSpec pod = daemonSet.getSpec().getTemplate().getSpec();
        VolumeMount mount = agent().getVolumeMounts().stream()
                .filter(m -> journal.equals(m.getMountPath()) || journal.startsWith(m.getMountPath() + "/"))
                .findFirst().orElseThrow(() -> new AssertionError("no mount holds " + journal));
        Volume volume = pod.getVolumes().stream().filter(v -> v.getName().equals(mount.getName())).findFirst()
                .orElseThrow();
        assertThat(volume.getHostPath()).as("the journal is on the node, not in the container").isNotNull();
    }

    @Test
    void theShippedDefaultsAreSecureToo() throws Exception {
        JsonObject shipped = new JsonObject(Files.readString(Path.of("conf/agent.json")));
        assertThat(SecurityOptions.fromJson(shipped.getJsonObject("security")).secure()).isTrue();
    }
}
