package io.vfioproxy.device;

import io.vertx.core.Future;
import io.vertx.core.VerticleBase;
import io.vertx.core.WorkerExecutor;
import io.vertx.core.json.JsonObject;
import java.util.concurrent.TimeUnit;

/**
 * Owns one device: opens it on a worker thread of its own, reports every state change to its listener (the agent
 * publishes them on the event bus and in its metrics) and hands a {@link DeviceHandle} to the registry. Closing the
 * verticle closes the device: a device left mid-migration keeps its state in the kernel, and the next open reads it.
 */
public final class DeviceVerticle extends VerticleBase {

    private static final System.Logger LOG = System.getLogger("io.vfioproxy.device");

    /** Kernel calls such as STOP_COPY -&gt; STOP may take long; warn only past this. */
    private static final long MAX_CALL_SECONDS = 300;

    private final String agent;
    private final JsonObject deviceConfig;
    private final DeviceController.TransitionListener listener;
    private final DeviceRegistry registry;
    private DeviceHandle handle;

    /**
     * @param registry receives the handle once the device is open; its {@link DeviceRegistry#beforeClose} action
     *        runs before the device closes
     */
    public DeviceVerticle(String agent, JsonObject deviceConfig, DeviceController.TransitionListener listener,
            DeviceRegistry registry) {
        this.agent = agent;
        this.deviceConfig = deviceConfig;
        this.listener = listener;
        this.registry = registry;
    }

    @Override
    public Future<?> start() {
        String name = deviceConfig.getString("name", "?");
        WorkerExecutor executor = vertx.createSharedWorkerExecutor("vmp-" + agent + "-" + name + "-"
                + deploymentID(), 1, MAX_CALL_SECONDS, TimeUnit.SECONDS);
        return executor.executeBlocking(() -> {
            MigrationDevice device = DeviceFactory.open(deviceConfig);
            try {
                DeviceController controller = new DeviceController(device, listener);
                listener.onOpened(device.name(), controller.state());
                return new DeviceHandle(controller, executor, device.identity().with(controller.flags().toString(),
                        deviceConfig.getString("compatibilityTag", "")), DevicePolicy.of(device.kind(), deviceConfig));
            } catch (Exception | Error e) {
                device.close();
                throw e;
            }
        }, false).onSuccess(h -> {
            handle = h;
            registry.add(h);
        }).onFailure(e -> executor.close());
    }

    @Override
    public Future<?> stop() {
        if (handle == null) {
            return Future.succeededFuture();
        }
        if (handle.heldFor() != null && handle.policy().kind() == DeviceKind.PCI_FUNCTION) {
            LOG.log(System.Logger.Level.WARNING, "agent " + agent + ": device " + handle.name() + " holds the state "
                    + "of migration " + handle.heldFor() + " for its consumer; closing it, vfio-pci resets it and "
                    + "that state is lost");
        }
        // A migration still holding the device ends first, so the device is left safe.
        return registry.closing(handle).eventually(() -> handle.close()).eventually(() -> handle.executor().close());
    }
}
