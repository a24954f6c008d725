package io.vfioproxy.device;

/** A blocking job on a device, run on the device's own worker thread. */
@FunctionalInterface
public interface DeviceTask<T> {
    T run(DeviceController device) throws Exception;
}
