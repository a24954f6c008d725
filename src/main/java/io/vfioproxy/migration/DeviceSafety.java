package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.uapi.DeviceState;
import java.util.List;
import java.util.stream.Collectors;

/** Puts devices back in a safe state after a failed migration, and says which state that was. */
final class DeviceSafety {

    private DeviceSafety() {
    }

    /**
     * A device that received (part of) a state: reset it unless it is RUNNING with no session open, which is
     * the state a reset leads to. A reset is the only way out of RESUMING.
     */
    static Future<DeviceState> reset(DeviceHandle device, String cause) {
        return device.submit(dc -> {
            if (dc.state() != DeviceState.RUNNING || dc.channel().isPresent()) {
                dc.reset(cause);
            }
            return dc.state();
        });
    }

    /** A source device: close its data fd and return it to RUNNING (a reset if that fails). */
    static Future<DeviceState> resume(DeviceHandle device, String cause) {
        return device.submit(dc -> {
            dc.closeChannel();
            dc.refreshState(cause);
            dc.setState(DeviceState.RUNNING, DeviceState.ERROR, cause);
            return dc.state();
        });
    }

    /** "RUNNING", or "RUNNING,STOP" for several devices, with the error where a state is not known. */
    static String describe(List<Future<DeviceState>> states) {
        return states.stream().map(f -> f.succeeded() ? f.result().name()
                : "unknown (" + f.cause().getMessage() + ")").collect(Collectors.joining(","));
    }
}
