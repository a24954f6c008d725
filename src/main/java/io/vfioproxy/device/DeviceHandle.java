package io.vfioproxy.device;

import io.vertx.core.Future;
import io.vertx.core.WorkerExecutor;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.MigrationFlags;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The asynchronous face of one device. Every call runs on the device's single worker thread, in submission
 * order, so calls on one device never overlap (like the kernel's per-device lock) and a slow device blocks no
 * event loop and no other device. Futures complete on the caller's context.
 */
public final class DeviceHandle {

    private final DeviceController controller;
    private final WorkerExecutor executor;
    private final DeviceIdentity identity;
    private final AtomicReference<String> owner = new AtomicReference<>();

    DeviceHandle(DeviceController controller, WorkerExecutor executor, DeviceIdentity identity) {
        this.controller = controller;
        this.executor = executor;
        this.identity = identity;
    }

    public String name() {
        return controller.name();
    }

    /** The identity read when the device was opened. */
    public DeviceIdentity identity() {
        return identity;
    }

    public MigrationFlags flags() {
        return controller.flags();
    }

    /**
     * Runs {@code task} on the device's worker thread. Once the device is closed the future fails instead of the
     * call throwing, so callers that hold resources until it completes (pooled buffers) always get it back.
     */
    public <T> Future<T> submit(DeviceTask<T> task) {
        try {
            return executor.executeBlocking(() -> task.run(controller), false);
        } catch (RejectedExecutionException e) {
            return Future.failedFuture(new IllegalStateException("device " + name() + " is closed", e));
        }
    }

    /** The device state, read from the device. */
    public Future<DeviceState> state() {
        return submit(c -> c.refreshState("state read"));
    }

    /** See {@link DeviceController#setState}. */
    public Future<Void> setState(DeviceState target, DeviceState recover, String cause) {
        return submit(c -> {
            c.setState(target, recover, cause);
            return null;
        });
    }

    /** VFIO_DEVICE_RESET. */
    public Future<Void> reset(String cause) {
        return submit(c -> {
            c.reset(cause);
            return null;
        });
    }

    /**
     * Reserves the device for one migration.
     *
     * @return false when another migration holds it
     */
    public boolean claim(String migration) {
        return owner.compareAndSet(null, migration);
    }

    /** Releases a reservation made by {@code migration}. */
    public void release(String migration) {
        owner.compareAndSet(migration, null);
    }

    /** The migration holding the device, or null. */
    public String owner() {
        return owner.get();
    }

    /** Closes the device on its worker thread. */
    Future<Void> close() {
        return submit(c -> {
            c.close();
            return null;
        });
    }

    WorkerExecutor executor() {
        return executor;
    }
}
