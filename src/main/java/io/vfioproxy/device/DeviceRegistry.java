package io.vfioproxy.device;

import io.vertx.core.Future;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;

/** The devices an agent exposes, by name. */
public final class DeviceRegistry {

    private final Map<String, DeviceHandle> devices = new ConcurrentHashMap<>();
    private volatile Function<DeviceHandle, Future<?>> beforeClose = d -> Future.succeededFuture();

    /**
     * What must happen before a device closes: the agent ends the migration that holds it, so the device is left
     * in a safe state (a source RUNNING, a destination reset) while it can still be reached. The device closes once
     * the returned future completes, so it must complete in bounded time.
     */
    public void beforeClose(Function<DeviceHandle, Future<?>> action) {
        this.beforeClose = action;
    }

    /** Runs the {@link #beforeClose} action for {@code device}. */
    Future<?> closing(DeviceHandle device) {
        return beforeClose.apply(device);
    }

    public void add(DeviceHandle handle) {
        if (devices.putIfAbsent(handle.name(), handle) != null) {
            throw new IllegalArgumentException("two devices are named " + handle.name());
        }
    }

    /** The device named {@code name}, or null. */
    public DeviceHandle find(String name) {
        return devices.get(name);
    }

    /** Every device, by name. */
    public List<DeviceHandle> all() {
        List<DeviceHandle> list = new ArrayList<>(devices.values());
        list.sort(Comparator.comparing(DeviceHandle::name));
        return list;
    }
}
