package io.vfioproxy.device;

import static io.vfioproxy.uapi.DeviceState.ERROR;
import static io.vfioproxy.uapi.DeviceState.RESUMING;
import static io.vfioproxy.uapi.DeviceState.RUNNING;
import static io.vfioproxy.uapi.DeviceState.RUNNING_P2P;
import static io.vfioproxy.uapi.DeviceState.STOP;
import static io.vfioproxy.uapi.DeviceState.STOP_COPY;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.vfioproxy.device.sim.FaultPlan;
import io.vfioproxy.device.sim.SimulatedDevice;
import io.vfioproxy.uapi.DeviceState;
import io.vfioproxy.uapi.Errno;
import io.vfioproxy.uapi.MigrationFlags;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class DeviceControllerTest {

    private final List<String> arcs = new ArrayList<>();

    private DeviceController controller(SimulatedDevice d) throws VfioException {
        return new DeviceController(d, (dev, from, to, cause, nanos) -> arcs.add(from + ">" + to));
    }

    private static SimulatedDevice device(FaultPlan faults) {
        return SimulatedDevice.builder("sim", 16 * 4096).pageSize(4096).flags(MigrationFlags.ALL).seed(1).faults(faults).build();
    }

    @Test
    void walksAndReportsEveryArc() throws Exception {
        DeviceController c = controller(device(new FaultPlan()));
        assertThat(c.setState(STOP_COPY, RUNNING, "test")).isPresent();
        assertThat(arcs).containsExactly("RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP", "STOP>STOP_COPY");
        assertThat(c.channel()).isPresent();
        c.setState(STOP, ERROR, "test");
        assertThat(c.channel()).isEmpty();
    }

    @Test
    void refusesInvalidArcsBeforeTheDeviceSeesThem() throws Exception {
        FaultPlan faults = new FaultPlan();
        SimulatedDevice d = device(faults);
        DeviceController c = controller(d);
        c.setState(STOP_COPY, RUNNING, "test");
        arcs.clear();
        assertThatThrownBy(() -> c.setState(DeviceState.PRE_COPY, RUNNING, "test"))
                .isInstanceOfSatisfying(VfioException.class, e -> {
                    assertThat(e.errno()).isEqualTo(Errno.EINVAL.value());
                    assertThat(e.getMessage()).contains("sim").contains("STOP_COPY").contains("refused before the ioctl");
                });
        assertThat(arcs).isEmpty();
        assertThat(d.state()).isEqualTo(STOP_COPY);
    }

    @Test
    void failureRecoversToTheRecoverState() throws Exception {
        SimulatedDevice d = device(new FaultPlan().failArc(STOP, STOP_COPY, Errno.EIO, false));
        DeviceController c = controller(d);
        assertThatThrownBy(() -> c.setState(STOP_COPY, RUNNING, "test")).hasMessageContaining("EIO");
        assertThat(d.state()).isEqualTo(RUNNING);
        assertThat(c.state()).isEqualTo(RUNNING);
        assertThat(arcs).containsExactly("RUNNING>RUNNING_P2P", "RUNNING_P2P>STOP", "STOP>RUNNING_P2P",
                "RUNNING_P2P>RUNNING");
    }

    @Test
    void whenRecoveryFailsTooTheDeviceIsResetAndTreatedAsRunning() throws Exception {
        FaultPlan faults = new FaultPlan().failArc(STOP, RESUMING, Errno.EIO, true);
        SimulatedDevice d = device(faults);
        DeviceController c = controller(d);
        assertThatThrownBy(() -> c.setState(RESUMING, STOP, "test")).hasMessageContaining("EIO");
        assertThat(d.state()).isEqualTo(RUNNING);
        assertThat(c.state()).isEqualTo(RUNNING);
        assertThat(arcs).last().asString().isEqualTo("ERROR>RUNNING");
    }

    @Test
    void recoverStateErrorMeansReset() throws Exception {
        SimulatedDevice d = device(new FaultPlan().failArc(RUNNING_P2P, STOP, Errno.EIO, false));
        DeviceController c = controller(d);
        assertThatThrownBy(() -> c.setState(STOP, ERROR, "test")).isInstanceOf(VfioException.class);
        assertThat(d.state()).isEqualTo(RUNNING);
    }

    @Test
    void neverAssumesRunningOnOpen() throws Exception {
        SimulatedDevice d = device(new FaultPlan());
        d.setState(STOP);
        DeviceController c = controller(d);
        assertThat(c.state()).isEqualTo(STOP);
    }

    @Test
    void aDeviceFoundInErrorIsResetRatherThanRefused() throws Exception {
        // The device went to ERROR behind the agent's back (a failed arc of another user, an agent that died).
        SimulatedDevice d = device(new FaultPlan().failArc(STOP, STOP_COPY, Errno.EIO, true));
        assertThatThrownBy(() -> d.setState(STOP_COPY)).isInstanceOf(VfioException.class);
        assertThat(d.state()).isEqualTo(ERROR);
        d.faults().clear();
        DeviceController c = controller(d);
        assertThat(c.state()).isEqualTo(ERROR);
        // Returning it to RUNNING takes a reset, and succeeds.
        c.setState(RUNNING, ERROR, "rollback");
        assertThat(d.state()).isEqualTo(RUNNING);
        assertThat(arcs).containsExactly("ERROR>RUNNING");
        // Anything else from ERROR resets, then fails: the request itself is not attempted.
        d.faults().failArc(STOP, STOP_COPY, Errno.EIO, true);
        assertThatThrownBy(() -> d.setState(STOP_COPY)).isInstanceOf(VfioException.class);
        d.faults().clear();
        c.refreshState("test");
        assertThatThrownBy(() -> c.setState(RESUMING, STOP, "load"))
                .isInstanceOfSatisfying(VfioException.class, e -> assertThat(e.getMessage())
                        .contains("ERROR -> RESUMING").contains("only VFIO_DEVICE_RESET leaves"));
        assertThat(d.state()).isEqualTo(RUNNING);
    }

    @Test
    void aResetThatFailsIsReportedWithTheFailureItFollowed() throws Exception {
        SimulatedDevice d = device(new FaultPlan().failArc(STOP, RESUMING, Errno.EIO, true).failReset(Errno.ENODEV));
        DeviceController c = controller(d);
        assertThatThrownBy(() -> c.setState(RESUMING, STOP, "test"))
                .isInstanceOfSatisfying(VfioException.class, e -> {
                    assertThat(e.errno()).as("the first failure's errno").isEqualTo(Errno.EIO.value());
                    assertThat(e.getMessage()).contains("STOP -> RESUMING").contains("EIO")
                            .contains("VFIO_DEVICE_RESET failed too").contains("ENODEV");
                    assertThat(e.getSuppressed()).hasSize(2);
                });
    }
}
