package io.vfioproxy.k8s;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.apps.DaemonSet;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import io.vertx.core.json.JsonArray;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * k8s/Containerfile checked as far as it can be without a container engine, after {@code mvn package}: what it
 * copies exists, and laid out as the image would hold it, its entry point and command run; the DaemonSet starts
 * that command and the image exposes the ports the pod names.
 */
class ContainerfileIT {

    private static final Path CONTAINERFILE = Path.of("k8s/Containerfile");

    /** The instructions, with continuation lines joined and comments left out. */
    private static List<String[]> instructions() throws Exception {
        List<String[]> all = new ArrayList<>();
        StringBuilder line = new StringBuilder();
        for (String raw : Files.readAllLines(CONTAINERFILE)) {
            if (raw.isBlank() || raw.strip().startsWith("#")) {
                continue;
            }
            line.append(raw.strip());
            if (raw.endsWith("\\")) {
                line.setLength(line.length() - 1);
                continue;
            }
            String[] parts = line.toString().split("\\s+", 2);
            all.add(new String[] {parts[0].toUpperCase(), parts.length > 1 ? parts[1] : ""});
            line.setLength(0);
        }
        return all;
    }

    private static String one(List<String[]> instructions, String name) {
        List<String> found = instructions.stream().filter(i -> i[0].equals(name)).map(i -> i[1]).toList();
        assertThat(found).as(name).hasSize(1);
        return found.get(0);
    }

    private static List<String> execForm(String argument) {
        return new JsonArray(argument).stream().map(String::valueOf).toList();
    }

    private static Container daemonSetAgent() throws Exception {
        try (InputStream in = Files.newInputStream(Path.of("k8s/base/daemonset.yaml"))) {
            DaemonSet ds = new KubernetesSerialization().unmarshal(in, DaemonSet.class);
            return ds.getSpec().getTemplate().getSpec().getContainers().get(0);
        }
    }

    @Test
    void theImageHoldsTheBuiltJarAndRunsTheCommandTheDaemonSetGives(@TempDir Path root) throws Exception {
        List<String[]> instructions = instructions();
        assertThat(one(instructions, "FROM")).startsWith("eclipse-temurin:17");
        // Every COPY source is there after the build, and goes where the image would have it.
        Map<String, String> copies = new LinkedHashMap<>();
        for (String[] i : instructions) {
            if (i[0].equals("COPY")) {
                String[] paths = i[1].split("\\s+");
                assertThat(paths).as("COPY " + i[1]).hasSize(2);
                Path source = Path.of(paths[0]);
                assertThat(source).as("COPY's source " + source + " exists after mvn package").isRegularFile();
                Path target = root.resolve(paths[1].substring(1));
                Files.createDirectories(target.getParent());
                Files.copy(source, target);
                copies.put(paths[1], paths[0]);
            }
        }
        assertThat(copies.values()).contains("target/vfio-migration-proxy.jar", "conf/agent.json");

        List<String> entrypoint = execForm(one(instructions, "ENTRYPOINT"));
        List<String> cmd = execForm(one(instructions, "CMD"));
        assertThat(entrypoint.subList(0, 2)).containsExactly("java", "-jar");
        assertThat(copies).as("the entry point's jar is the one copied").containsKey(entrypoint.get(2));
        String config = cmd.get(cmd.indexOf("--config") + 1);
        assertThat(copies.get(config)).isEqualTo("conf/agent.json");
        Container agent = daemonSetAgent();
        assertThat(agent.getCommand()).as("the DaemonSet keeps the image's entry point").isNullOrEmpty();
        assertThat(agent.getArgs()).isEqualTo(cmd);

        // The entry point, on the image's files: the jar starts and knows the command.
        List<String> run = new ArrayList<>();
        run.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        run.add("-jar");
        run.add(root.resolve(entrypoint.get(2).substring(1)).toString());
        run.add(cmd.get(0));
        run.add("--help");
        Process p = new ProcessBuilder(run).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(out).isZero();
        assertThat(out).contains("--config");

        // The image exposes every port the pod names.
        List<Integer> exposed = List.of(one(instructions, "EXPOSE").split("\\s+")).stream().map(Integer::valueOf)
                .toList();
        assertThat(exposed).containsExactlyInAnyOrderElementsOf(agent.getPorts().stream()
                .map(ContainerPort::getContainerPort).toList());
    }
}
