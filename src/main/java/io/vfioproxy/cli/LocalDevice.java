package io.vfioproxy.cli;

import io.vertx.core.Context;
import io.vertx.core.Future;
import io.vertx.core.Promise;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vfioproxy.agent.AgentConfig;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.device.DeviceVerticle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Supplier;

/** A device opened by a one-shot command, in this process, the way an agent opens it. */
final class LocalDevice {

    private LocalDevice() {
    }

    /**
     * Opens {@code name}: a device of the configuration file when it has one by that name, else a native device
     * named by cdev path, PCI address or mdev UUID.
     */
    static DeviceHandle open(Vertx vertx, Path config, String name) {
        JsonObject entry = null;
        if (config != null && Files.isRegularFile(config)) {
            JsonArray devices = AgentConfig.load(vertx, config, System.getenv()).await().getJsonArray("devices", new JsonArray());
            for (int i = 0; i < devices.size(); i++) {
                if (name.equals(devices.getJsonObject(i).getString("name"))) {
                    entry = devices.getJsonObject(i);
                }
            }
        }
        if (entry == null) {
            entry = new JsonObject().put("name", name).put("backend", "native").put("device", name);
        }
        DeviceRegistry registry = new DeviceRegistry();
        vertx.deployVerticle(new DeviceVerticle("cli", entry, (device, from, to, cause, nanos) -> { },
                registry)).await();
        return registry.all().get(0);
    }

    /** What a one-shot command does with the device it opened, on an event-loop context. */
    @FunctionalInterface
    interface Job<T> {
        Future<T> run(Vertx vertx, DeviceHandle device);
    }

    /**
     * Opens {@code name} in a Vert.x of its own, runs {@code job} with it, closes everything and returns the
     * job's result; failures come as the job's exception.
     */
    static <T> T withDevice(Path config, String name, Job<T> job) {
        Vertx vertx = Vertx.vertx();
        try {
            DeviceHandle handle = open(vertx, config, name);
            return run(vertx, () -> job.run(vertx, handle));
        } finally {
            vertx.close().await();
        }
    }

    /** Runs {@code job} on one event-loop context, so its callbacks never race, and waits for it. */
    static <T> T run(Vertx vertx, Supplier<Future<T>> job) {
        Context context = vertx.getOrCreateContext();
        Promise<T> result = Promise.promise();
        context.runOnContext(v -> job.get().onComplete(result));
        return result.future().await();
    }
}
