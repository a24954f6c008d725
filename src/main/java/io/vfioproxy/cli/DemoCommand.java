package io.vfioproxy.cli;

import io.vertx.core.Context;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationService;
import io.vfioproxy.migration.MigrationStatus;
import io.vfioproxy.stream.StreamEndpoint;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.util.ByteSize;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The main job's embedded default: a destination agent and a source agent on loopback, one simulated device
 * each, and one verified migration between them.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Start a destination and a source agent on loopback with simulated devices, migrate the "
                + "source device's state and verify it arrived byte for byte. Exit code 0 only when verified.")
public final class DemoCommand implements Callable<Integer> {

    @Option(names = "--size", defaultValue = "1GiB", description = "device state size (${DEFAULT-VALUE})")
    String size;

    @Option(names = "--chunk", defaultValue = "1MiB", description = "chunk size (${DEFAULT-VALUE})")
    String chunk;

    @Option(names = "--page-size", defaultValue = "4096", description = "simulated page size (${DEFAULT-VALUE})")
    int pageSize;

    @Option(names = "--stop-copy", description = "stop the device for the whole transfer (default: pre-copy)")
    boolean stopCopy;

    @Option(names = "--precopy", description = "move the state while the device runs (the default)")
    boolean precopy;

    @Option(names = "--dirty-rate", defaultValue = "32MiB",
            description = "bytes per second the simulated workload writes while the device runs (${DEFAULT-VALUE})")
    String dirtyRate;

    @Option(names = "--downtime-limit", defaultValue = "300",
            description = "switch over when the rest fits in this many ms (${DEFAULT-VALUE})")
    long downtimeLimit;

    @Option(names = "--precopy-budget", defaultValue = "10000",
            description = "switch over after this many ms of pre-copy, converged or not (${DEFAULT-VALUE})")
    long precopyBudget;

    /** Held while the demo runs: JUL keeps loggers weakly. */
    private java.util.logging.Logger quiet;

    @Override
    public Integer call() throws Exception {
        // The summary says what the agents would log; keep their INFO lines out of the progress bar.
        quiet = java.util.logging.Logger.getLogger("io.vfioproxy");
        quiet.setLevel(java.util.logging.Level.WARNING);
        if (stopCopy && precopy) {
            throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(this),
                    "choose --precopy or --stop-copy");
        }
        long stateSize = ByteSize.parse(size);
        int chunkSize = (int) ByteSize.parse(chunk);
        MigrationRequest.Mode mode = stopCopy ? MigrationRequest.Mode.STOP_COPY : MigrationRequest.Mode.PRECOPY;
        System.out.println("demo: two agents on loopback, in the clear (security.insecure: no TLS, no tokens; "
                + "README, \"Security\", for agents that are not)");
        Vertx vertx = Vertx.vertx();
        try {
            AgentVerticle destination = agent("destination", stateSize, 2, chunkSize, "0").start(vertx);
            AgentVerticle source = agent("source", stateSize, 1, chunkSize, dirtyRate).start(vertx);
            DeviceHandle srcDevice = source.devices().find("sim0");
            DeviceHandle dstDevice = destination.devices().find("sim0");
            // The workload writes to a tenth of its pages before it moves, so the state is not a fresh one.
            long pages = stateSize / pageSize;
            srcDevice.submit(c -> ((SimulatedDevice) c.device()).dirtyPages(Math.max(1, pages / 10), 42)).await();

            StreamEndpoint endpoint = LoopbackAgent.endpoint(destination);
            System.out.printf("demo: migrating %s of simulated device state from agent '%s' to agent '%s' (%s), %s%n",
                    ByteSize.format(stateSize), source.name(), destination.name(), endpoint,
                    mode == MigrationRequest.Mode.PRECOPY ? "pre-copy while the workload writes "
                            + ByteSize.format(ByteSize.parse(dirtyRate)) + "/s" : "stop-copy");

            Context context = vertx.getOrCreateContext();
            Promise<MigrationService.Started> startedPromise = Promise.promise();
            context.runOnContext(v -> {
                try {
                    startedPromise.complete(source.migrations().migrate(
                            new MigrationRequest("sim0", endpoint, "sim0", chunkSize).withMode(mode)
                                    .withSwitchover(false, downtimeLimit, precopyBudget)));
                } catch (RuntimeException e) {
                    startedPromise.fail(e);
                }
            });
            MigrationService.Started started = startedPromise.future().await();
            ProgressBar bar = new ProgressBar(System.err);
            long timer = vertx.setPeriodic(100, id -> {
                MigrationStatus now = started.record().status();
                bar.update(now.phase().name(), now.transfer().dataBytes(), now.transfer().stateSize());
            });
            MigrationStatus record;
            try {
                record = started.completion().await();
            } catch (RuntimeException e) {
                vertx.cancelTimer(timer);
                bar.finish();
                System.out.println("migration failed: " + e.getMessage());
                System.out.println("source device state: " + srcDevice.state().await());
                System.out.println("verified: no");
                return 1;
            }
            vertx.cancelTimer(timer);
            bar.update(record.phase().name(), record.transfer().dataBytes(), record.transfer().stateSize());
            bar.finish();

            long sourceDigest = srcDevice.submit(c -> ((SimulatedDevice) c.device()).stateDigest()).await();
            long destDigest = dstDevice.submit(c -> ((SimulatedDevice) c.device()).stateDigest()).await();
            DeviceState destState = dstDevice.state().await();
            boolean verified = sourceDigest == destDigest && destState == DeviceState.RUNNING;
            double seconds = record.transferSeconds();
            double rate = record.transfer().dataBytes() / seconds;
            System.out.printf(Locale.ROOT, "bytes: %d (%s of device data)%n", record.transfer().dataBytes(),
                    ByteSize.format(record.transfer().dataBytes()));
            System.out.printf(Locale.ROOT, "throughput: %.2f GB/s%n", rate / 1e9);
            if (mode == MigrationRequest.Mode.PRECOPY) {
                System.out.printf(Locale.ROOT, "pre-copy: %s in %d iteration%s while the device ran, %s after it "
                        + "stopped%n", ByteSize.format(record.transfer().precopyBytes()), record.transfer().iterations(),
                        record.transfer().iterations() == 1 ? "" : "s", ByteSize.format(record.transfer().stopCopyBytes()));
                System.out.println("switchover: " + record.switchoverReason());
            } else {
                System.out.println("stop-copy: the device was stopped for the whole transfer");
            }
            System.out.printf(Locale.ROOT, "downtime: %d ms%n", Math.round(record.downtimeMillis()));
            if (mode == MigrationRequest.Mode.PRECOPY) {
                double stopCopyMillis = stateSize / rate * 1000;
                System.out.printf(Locale.ROOT, "stop-copy alone would have stopped the device for about %d ms (the "
                        + "whole state at %.2f GB/s): pre-copy cut the downtime to %.1f%% of that%n",
                        Math.round(stopCopyMillis), rate / 1e9, 100 * record.downtimeMillis() / stopCopyMillis);
            }
            System.out.println("verified: " + (verified ? "yes" : "no"));
            return verified ? 0 : 1;
        } finally {
            vertx.close().await();
        }
    }

    private LoopbackAgent agent(String name, long stateSize, long seed, int chunkSize, String rate) {
        return LoopbackAgent.named(name).withoutApi().set("migration", "chunkSize", chunkSize)
                .device(LoopbackAgent.simulated("sim0", stateSize, seed).put("pageSize", pageSize).put("dirtyRate", rate));
    }
}
