package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.uapi.DeviceState;
import java.util.ArrayList;
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

    /**
     * Source devices back to the state each had when the migration started (RUNNING, or STOP for a device that was
     * stopped), in P2P order as on the way in: every device that runs again passes RUNNING_P2P before any reaches
     * RUNNING, so none sends peer-to-peer DMA to a peer that is not running yet. Each closes its data fd; a change
     * that fails falls back to a reset.
     *
     * @return completes, never fails, with each device's final state in the order given ({@link #describe})
     */
    static Future<String> restore(List<DeviceAtStart> devices, String cause) {
        List<Future<Void>> quiesced = new ArrayList<>();
        for (DeviceAtStart d : devices) {
            quiesced.add(d.device().<Void>submit(dc -> {
                dc.closeChannel();
                DeviceState now = dc.refreshState(cause);
                DeviceState first = d.state() == DeviceState.STOP ? DeviceState.STOP
                        // Still running (RUNNING, PRE_COPY): straight back to RUNNING in the second step.
                        : now.isRunning() || !d.device().flags().p2p() ? now : DeviceState.RUNNING_P2P;
                dc.setState(first, DeviceState.ERROR, cause);
                return null;
            }).recover(e -> Future.succeededFuture()));
        }
        return Future.join(quiesced).transform(ignored -> {
            List<Future<DeviceState>> done = new ArrayList<>();
            for (DeviceAtStart d : devices) {
                done.add(d.device().submit(dc -> {
                    dc.closeChannel();
                    dc.refreshState(cause);
                    dc.setState(d.state(), DeviceState.ERROR, cause);
                    return dc.state();
                }));
            }
            return Future.join(done).transform(ar -> Future.succeededFuture(describe(done)));
        });
    }

    /** "RUNNING", or "RUNNING,STOP" for several devices, with the error where a state is not known. */
    static String describe(List<Future<DeviceState>> states) {
        return states.stream().map(f -> f.succeeded() ? f.result().name()
                : "unknown (" + f.cause().getMessage() + ")").collect(Collectors.joining(","));
    }
}
