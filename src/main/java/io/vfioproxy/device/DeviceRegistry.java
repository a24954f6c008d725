package io.vfioproxy.device;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** The devices an agent exposes, by name. */
public final class DeviceRegistry {

    private final Map<String, DeviceHandle> devices = new ConcurrentHashMap<>();

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
