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
    private final DevicePolicy policy;
    private final AtomicReference<String> owner = new AtomicReference<>();
    private volatile String handedOverTo;
    private volatile String heldFor;
    private volatile String movedBy;

    /**
     * Who accounts for the device being out of RUNNING, as the {@code vmp_device_holder} gauge shows it: an alert
     * fires for a device stopped with no holder.
     */
    public enum Holder {
        /** Nobody: a device in RUNNING, or one left stopped that nothing explains. */
        NONE(0),
        /** A migration has it. */
        MIGRATION(1),
        /** It holds migrated state in STOP for its consumer. */
        CONSUMER(2),
        /** Its state moved to a destination (a committed source): stopped on purpose. */
        MOVED(3),
        /** It was handed over to its consumer. */
        HANDED_OVER(4);

        private final int value;

        Holder(int value) {
            this.value = value;
        }

        public int value() {
            return value;
        }
    }

    DeviceHandle(DeviceController controller, WorkerExecutor executor, DeviceIdentity identity, DevicePolicy policy) {
        this.controller = controller;
        this.executor = executor;
        this.identity = identity;
        this.policy = policy;
    }

    /** What a destination does with this device after loading it. */
    public DevicePolicy policy() {
        return policy;
    }

    /**
     * Notes that the device holds the state migration {@code migration} loaded, in STOP, for its consumer: closing
     * it now would lose that state on a PCI function.
     */
    public void holdFor(String migration) {
        heldFor = migration;
    }

    /** The migration whose loaded state the device holds for its consumer, or null. */
    public String heldFor() {
        return heldFor;
    }

    /** Notes that migration {@code migration} committed: the state lives at its destination, this device stays stopped. */
    public void stateMovedBy(String migration) {
        movedBy = migration;
    }

    /** The committed migration that moved this device's state away, or null. */
    public String movedBy() {
        return movedBy;
    }

    /** Who accounts for the device's state now (see {@link Holder}). */
    public Holder holder() {
        return handedOverTo != null ? Holder.HANDED_OVER : owner.get() != null ? Holder.MIGRATION
                : heldFor != null ? Holder.CONSUMER : movedBy != null ? Holder.MOVED : Holder.NONE;
    }

    /** Where the device was handed over to, or null while the agent has it. */
    public String handedOverTo() {
        return handedOverTo;
    }

    /**
     * Hands the device to its consumer listening at {@code socketPath} (its fds over SCM_RIGHTS); the agent no longer
     * has it afterwards.
     */
    public Future<Void> handOver(String socketPath) {
        return submit(c -> {
            c.closeChannel();
            c.device().handOver(socketPath);
            handedOverTo = socketPath;
            heldFor = null;
            return null;
        });
    }

    /**
     * Gives up the state the device holds for its consumer: VFIO_DEVICE_RESET, and the device is the agent's again.
     */
    public Future<Void> discardHeld(String cause) {
        return submit(c -> {
            c.reset(cause);
            heldFor = null;
            movedBy = null;
            return null;
        });
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
            movedBy = null;
            return null;
        });
    }

    /**
     * Reserves the device for one migration; a device handed over belongs to its consumer and cannot be.
     *
     * @return false when another migration holds it, or it was handed over
     */
    public boolean claim(String migration) {
        if (handedOverTo != null || !owner.compareAndSet(null, migration)) {
            return false;
        }
        heldFor = null;
        movedBy = null;
        return true;
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
