package io.vfioproxy.lab;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

/**
 * The native backend on a real kernel: boots the kernel lab's guest once (../shared/kernel-lab, Linux 6.12 with
 * two migratable mtty mdevs) and runs {@link LabScenarios} in it, then checks each scenario's line. Skipped, with
 * the reason printed, only where the lab cannot run.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(value = 20, unit = TimeUnit.MINUTES)
class KernelLabIT {

    private static final int BOOT_ATTEMPTS = 4;
    /**
     * What all boot attempts together may take: the scenarios need about 150 s under emulation on an idle machine.
     * Each attempt's guest gets the time left as the lab's own watchdog, so the lab, not JUnit, ends a hung guest.
     */
    private static final long LAB_SECONDS = 20 * 60;
    private static final int LAB_FAILURE = 125;

    private final Map<String, String> results = new LinkedHashMap<>();
    private final List<String> output = new ArrayList<>();
    private int exitCode;

    private static String missing(Path lab) {
        if (!Files.isExecutable(lab.resolve("run-in-guest.sh")) || !Files.isRegularFile(lab.resolve("bzImage"))) {
            return "no kernel lab at " + lab;
        }
        for (String tool : List.of("qemu-system-x86_64", "cpio")) {
            boolean found = false;
            for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
                found |= Files.isExecutable(Path.of(dir, tool));
            }
            if (!found) {
                return tool + " is not installed (apt-get install qemu-system-x86 cpio busybox-static)";
            }
        }
        if (!Files.isExecutable(Path.of("/bin/busybox"))) {
            return "/bin/busybox is not installed (apt-get install busybox-static)";
        }
        return null;
    }

    /** JUnit's limit is above the lab's own (LAB_SECONDS); the default 120 s is less than one boot may need. */
    @BeforeAll
    @Timeout(value = LAB_SECONDS + 120, unit = TimeUnit.SECONDS)
    void bootTheGuestOnce() throws Exception {
        Path project = Path.of("").toAbsolutePath();
        Path lab = project.resolveSibling("shared").resolve("kernel-lab");
        String missing = missing(lab);
        if (missing != null) {
            System.out.println("KernelLabIT skipped: " + missing);
            Assumptions.abort(missing);
        }
        String classpath = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        // The guest's init leaves the loopback interface down; the agent-to-agent scenario needs it.
        String job = "/bin/busybox ip link set lo up && exec \"$0\" \"$@\"";
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(LAB_SECONDS);
        // Exit status 125 is the lab's own failure (under emulation the guest kernel occasionally fails to boot):
        // boot again. A scenario's failure is never retried.
        for (int attempt = 1; attempt <= BOOT_ATTEMPTS; attempt++) {
            long left = TimeUnit.NANOSECONDS.toSeconds(deadline - System.nanoTime());
            if (left < 60) {
                break;
            }
            boot(List.of(lab.resolve("run-in-guest.sh").toString(), "--workdir", project.toString(),
                    "--timeout", Long.toString(left), "--", "/bin/sh", "-c", job, java, "-XX:TieredStopAtLevel=1",
                    "-cp", classpath, LabScenarios.class.getName()));
            if (exitCode != LAB_FAILURE || !results.isEmpty()) {
                return;
            }
            System.out.println("KernelLabIT: the lab failed to boot its guest (attempt " + attempt + " of "
                    + BOOT_ATTEMPTS + ")");
        }
    }

    private void boot(List<String> command) throws IOException, InterruptedException {
        output.clear();
        results.clear();
        ProcessBuilder pb = new ProcessBuilder(command);
        pb.redirectErrorStream(true);
        Process process = pb.start();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(process.getInputStream(),
                StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                String l = line.strip();
                output.add(l);
                System.out.println("[lab] " + l);
                if (l.startsWith("LAB ")) {
                    String[] parts = l.split(" ", 3);
                    results.put(parts[1], parts.length > 2 ? parts[2] : "");
                }
            }
        }
        exitCode = process.waitFor();
    }

    private void assertOk(String scenario) {
        assertThat(exitCode).as("guest exit code; output:%n%s", String.join("\n", output)).isZero();
        assertThat(results).as("scenarios reported").containsKey(scenario);
        assertThat(results.get(scenario)).as(scenario).startsWith("OK");
    }

    @Test
    void discoveryListsBothMdevsWithTheirFlags() {
        assertOk("discovery");
        assertThat(results.get("discovery")).contains("flags=STOP_COPY,P2P,PRE_COPY");
    }

    @Test
    void opensThroughTheGroupTheCdevAndAHandedOverFd() {
        assertOk("open-paths");
    }

    @Test
    void readsPrecopyInfoInPreCopy() {
        assertOk("precopy-info");
        assertThat(results.get("precopy-info")).contains("then ENOMSG");
    }

    @Test
    void refusesAnArcTheKernelWouldSpinOnBeforeAnyIoctl() {
        assertOk("invalid-arc");
    }

    @Test
    void savesAndRestoresBetweenTheTwoDevices() {
        assertOk("save-restore");
    }

    @Test
    void migratesAgentToAgentInsideTheGuest() {
        assertOk("migration");
    }

    @Test
    void migratesWithPreCopyOnTheRealDevice() {
        assertOk("precopy-migration");
    }

    @Test
    void aTruncatedStreamLeavesResumingUntilReset() {
        assertOk("truncated-stream");
    }

    @Test
    void anAgentStartedOnWhatAKilledOneLeftRunsTheRealDevicesAgain() {
        assertOk("crash-recovery");
        assertThat(results.get("crash-recovery")).contains("left in PRE_COPY and RESUMING");
    }

    @Test
    void theDevicesSaveAndRestoreCommandsWorkOnRealDevices() {
        assertOk("commands");
    }

    @Test
    void everyScenarioRan() throws IOException {
        assertThat(output).contains("LAB-DONE failures=0");
    }
}
