package io.vfioproxy.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code chaos --migrations 200 --seed 1} as a user runs it, from the packaged jar: two agent JVMs, faults of every
 * class, and nothing stranded, lost or leaked.
 */
class ChaosIT {

    @Test
    @Timeout(value = 15, unit = TimeUnit.MINUTES)
    void twoHundredMigrationsUnderFaultsStrandAndLoseNothing(@TempDir Path dir) throws Exception {
        Path jar = Path.of("target", "vfio-migration-proxy.jar");
        assertThat(jar).as("the packaged jar (mvn verify packages it before the integration tests)").exists();
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(java, "-jar", jar.toString(), "chaos", "--migrations", "200", "--seed", "1",
                "--dir", dir.toString()).redirectErrorStream(true).start();
        List<String> lines = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(),
                StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                lines.add(line);
            }
        }
        int exit = p.waitFor();
        String out = String.join("\n", lines);
        assertThat(exit).as(out).isZero();
        String last = lines.get(lines.size() - 1);
        assertThat(last).matches("chaos: \\d+ migrations, \\d+ faults, stranded 0, lost 0, leaked 0");
        for (String fault : List.of("none", "kill-source", "kill-destination", "cut", "stall", "ioctl", "slow-device",
                "cancel", "concurrent")) {
            assertThat(out).as(fault).containsPattern("(?m)^" + fault + ": [1-9]\\d* \\(");
        }
        // The leak check measured the agents (one started again near the end is not warm): fds and threads from
        // /proc, direct buffers from the JVM's own count.
        String measured = ": \\d+ fds, \\d+ threads, [0-9.]+ [KMG]iB of direct buffers once warm; \\d+, \\d+, "
                + "[0-9.]+ [KMG]iB at the end$";
        assertThat(out).containsPattern("(?m)^chaos-[ab]" + measured);
        for (String agent : List.of("chaos-a", "chaos-b")) {
            assertThat(out).as(agent).containsPattern("(?m)^" + agent + "(" + measured + "|: not measured: .*)");
        }
        // Every restarted agent's journal was emptied by its successor.
        try (var files = Files.walk(dir)) {
            assertThat(files.filter(f -> f.toString().endsWith(".json") && f.getParent().getFileName().toString()
                    .endsWith("-journal"))).isEmpty();
        }
    }
}
