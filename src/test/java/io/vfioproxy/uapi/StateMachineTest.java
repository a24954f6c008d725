package io.vfioproxy.uapi;

import static io.vfioproxy.uapi.DeviceState.ERROR;
import static io.vfioproxy.uapi.DeviceState.PRE_COPY;
import static io.vfioproxy.uapi.DeviceState.PRE_COPY_P2P;
import static io.vfioproxy.uapi.DeviceState.RESUMING;
import static io.vfioproxy.uapi.DeviceState.RUNNING;
import static io.vfioproxy.uapi.DeviceState.RUNNING_P2P;
import static io.vfioproxy.uapi.DeviceState.STOP;
import static io.vfioproxy.uapi.DeviceState.STOP_COPY;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class StateMachineTest {

    private static final MigrationFlags STOP_COPY_ONLY = MigrationFlags.parse("STOP_COPY");
    private static final MigrationFlags WITH_P2P = MigrationFlags.parse("STOP_COPY,P2P");
    private static final MigrationFlags WITH_PRE_COPY = MigrationFlags.parse("STOP_COPY,PRE_COPY");
    private static final MigrationFlags ALL = MigrationFlags.parse("STOP_COPY,P2P,PRE_COPY");

    private static String path(MigrationFlags flags, DeviceState from, DeviceState to) {
        try {
            return StateMachine.describe(StateMachine.path(flags, from, to));
        } catch (RefusedTransitionException e) {
            return "EINVAL";
        }
    }

    /** Paths from the kernel's uAPI comment and QEMU's use of it (../shared/vfio-facts.md, anchors 2.3). */
    @ParameterizedTest(name = "{0}: {1} -> {2} = {3}")
    @CsvSource(delimiter = ';', value = {
        "STOP_COPY,P2P,PRE_COPY; RUNNING; STOP_COPY; RUNNING_P2P > STOP > STOP_COPY",
        "STOP_COPY,P2P,PRE_COPY; PRE_COPY; STOP_COPY; PRE_COPY_P2P > STOP_COPY",
        "STOP_COPY,P2P,PRE_COPY; RESUMING; RUNNING; STOP > RUNNING_P2P > RUNNING",
        "STOP_COPY; RUNNING; STOP_COPY; STOP > STOP_COPY",
        "STOP_COPY; RUNNING; RESUMING; STOP > RESUMING",
        "STOP_COPY; STOP_COPY; RUNNING; STOP > RUNNING",
        "STOP_COPY; RESUMING; RUNNING; STOP > RUNNING",
        "STOP_COPY; RESUMING; STOP_COPY; STOP > STOP_COPY",
        "STOP_COPY; RUNNING; STOP; STOP",
        "STOP_COPY; STOP; RUNNING; RUNNING",
        "STOP_COPY,P2P; RUNNING; STOP_COPY; RUNNING_P2P > STOP > STOP_COPY",
        "STOP_COPY,P2P; RESUMING; RUNNING; STOP > RUNNING_P2P > RUNNING",
        "STOP_COPY,P2P; RUNNING; STOP; RUNNING_P2P > STOP",
        "STOP_COPY,PRE_COPY; STOP; PRE_COPY; RUNNING > PRE_COPY",
        "STOP_COPY,PRE_COPY; PRE_COPY; STOP; RUNNING > STOP",
        "STOP_COPY,PRE_COPY; PRE_COPY; STOP_COPY; STOP_COPY",
        "STOP_COPY,PRE_COPY; PRE_COPY; RESUMING; RUNNING > STOP > RESUMING",
        "STOP_COPY,PRE_COPY; RESUMING; PRE_COPY; STOP > RUNNING > PRE_COPY",
        "STOP_COPY,PRE_COPY; STOP_COPY; PRE_COPY; EINVAL",
        "STOP_COPY,P2P,PRE_COPY; PRE_COPY; RESUMING; RUNNING > RUNNING_P2P > STOP > RESUMING",
        "STOP_COPY,P2P,PRE_COPY; PRE_COPY_P2P; STOP; RUNNING_P2P > STOP",
        "STOP_COPY,P2P,PRE_COPY; RUNNING; PRE_COPY_P2P; RUNNING_P2P > PRE_COPY_P2P",
        "STOP_COPY,P2P,PRE_COPY; RUNNING_P2P; PRE_COPY; RUNNING > PRE_COPY",
        "STOP_COPY,P2P,PRE_COPY; RESUMING; PRE_COPY; STOP > RUNNING_P2P > RUNNING > PRE_COPY",
        "STOP_COPY,P2P,PRE_COPY; STOP; PRE_COPY; RUNNING_P2P > RUNNING > PRE_COPY",
        "STOP_COPY,P2P,PRE_COPY; STOP_COPY; PRE_COPY; EINVAL",
        "STOP_COPY,P2P,PRE_COPY; STOP_COPY; PRE_COPY_P2P; EINVAL",
        "STOP_COPY,P2P,PRE_COPY; RUNNING; ERROR; EINVAL",
        "STOP_COPY,P2P,PRE_COPY; ERROR; RUNNING; EINVAL",
        "STOP_COPY,P2P,PRE_COPY; RUNNING; RUNNING; =",
        "STOP_COPY; RUNNING; PRE_COPY; EINVAL",
        "STOP_COPY; RUNNING; RUNNING_P2P; EINVAL",
        "STOP_COPY,PRE_COPY; RUNNING; PRE_COPY_P2P; EINVAL",
    })
    void walksTheKernelsPaths(String flags, DeviceState from, DeviceState to, String expected) {
        assertThat(path(MigrationFlags.parse(flags), from, to)).isEqualTo(expected);
    }

    /**
     * The matrix the kernel lab measured on mtty (flags 0x7): which SETs the real kernel accepts and which arcs
     * return a data fd (../shared/kernel-lab/README.md). "ok+fd" means the last arc opens a data session.
     */
    @Test
    void agreesWithTheMatrixMeasuredOnTheRealKernel() {
        DeviceState[] order = {STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P};
        String[] rows = {
            "ok ok ok+fd ok+fd ok ok+fd ok+fd",
            "ok ok ok+fd ok+fd ok ok+fd ok+fd",
            "ok ok ok ok+fd ok EINVAL EINVAL",
            "ok ok ok+fd ok ok ok+fd ok+fd",
            "ok ok ok+fd ok+fd ok ok+fd ok+fd",
            "ok ok ok ok+fd ok ok ok",
            "ok ok ok ok+fd ok ok ok",
        };
        for (int r = 0; r < order.length; r++) {
            String[] cells = rows[r].split(" ");
            for (int c = 0; c < order.length; c++) {
                DeviceState from = order[r];
                DeviceState to = order[c];
                String actual;
                try {
                    List<DeviceState> p = StateMachine.path(ALL, from, to);
                    DeviceState before = p.size() > 1 ? p.get(p.size() - 2) : from;
                    actual = !p.isEmpty() && StateMachine.opensSession(before, to) ? "ok+fd" : "ok";
                } catch (RefusedTransitionException e) {
                    actual = "EINVAL";
                }
                assertThat(actual).as(from + " -> " + to).isEqualTo(cells[c]);
            }
        }
    }

    /** The direct arcs each flag set's drivers implement, from the uAPI comment in include/uapi/linux/vfio.h. */
    private static Map<DeviceState, Set<DeviceState>> arcs(MigrationFlags f) {
        Map<DeviceState, Set<DeviceState>> a = new EnumMap<>(DeviceState.class);
        for (DeviceState s : DeviceState.values()) {
            a.put(s, EnumSet.noneOf(DeviceState.class));
        }
        a.get(RESUMING).add(STOP);
        a.get(STOP).add(RESUMING);
        a.get(STOP).add(STOP_COPY);
        a.get(STOP_COPY).add(STOP);
        if (f.p2p()) {
            a.get(RUNNING).add(RUNNING_P2P);
            a.get(RUNNING_P2P).add(RUNNING);
            a.get(RUNNING_P2P).add(STOP);
            a.get(STOP).add(RUNNING_P2P);
        } else {
            a.get(RUNNING).add(STOP);
            a.get(STOP).add(RUNNING);
        }
        if (f.preCopy()) {
            a.get(RUNNING).add(PRE_COPY);
            a.get(PRE_COPY).add(RUNNING);
            if (f.p2p()) {
                a.get(PRE_COPY).add(PRE_COPY_P2P);
                a.get(PRE_COPY_P2P).add(PRE_COPY);
                a.get(PRE_COPY_P2P).add(RUNNING_P2P);
                a.get(RUNNING_P2P).add(PRE_COPY_P2P);
                a.get(PRE_COPY_P2P).add(STOP_COPY);
            } else {
                a.get(PRE_COPY).add(STOP_COPY);
            }
        }
        return a;
    }

    /**
     * Shortest path length, or -1: an independent oracle. The uAPI's rule: a path never enters the saving group
     * (PRE_COPY, PRE_COPY_P2P, STOP_COPY) in its interior, so a saving state is passed through only by a path that
     * starts in the group and has not left it.
     */
    private static int shortest(Map<DeviceState, Set<DeviceState>> arcs, DeviceState from, DeviceState to) {
        Map<DeviceState, Integer> dist = new EnumMap<>(DeviceState.class);
        Map<DeviceState, Boolean> inGroupSinceStart = new EnumMap<>(DeviceState.class);
        ArrayDeque<DeviceState> queue = new ArrayDeque<>();
        dist.put(from, 0);
        inGroupSinceStart.put(from, from.isSaving());
        queue.add(from);
        while (!queue.isEmpty()) {
            DeviceState s = queue.poll();
            if (s == to) {
                return dist.get(s);
            }
            if (s != from && s.isSaving() && !inGroupSinceStart.get(s)) {
                continue;
            }
            for (DeviceState n : arcs.get(s)) {
                if (!dist.containsKey(n)) {
                    dist.put(n, dist.get(s) + 1);
                    inGroupSinceStart.put(n, inGroupSinceStart.get(s) && n.isSaving());
                    queue.add(n);
                }
            }
        }
        return -1;
    }

    @Test
    void everyPathIsAShortestWalkOverRealArcsForAllFourFlagSets() {
        int pairs = 0;
        for (MigrationFlags f : MigrationFlags.DEFINED) {
            Map<DeviceState, Set<DeviceState>> arcs = arcs(f);
            for (DeviceState from : DeviceState.values()) {
                for (DeviceState to : DeviceState.values()) {
                    pairs++;
                    if (from == to) {
                        assertThat(path(f, from, to)).isEqualTo("=");
                        continue;
                    }
                    boolean supported = f.supports(from) && f.supports(to);
                    // The uAPI blocks these two outright, although a walk through STOP and RUNNING exists.
                    boolean blocked = from == STOP_COPY && (to == PRE_COPY || to == PRE_COPY_P2P);
                    int expected = supported && !blocked ? shortest(arcs, from, to) : -1;
                    List<DeviceState> walk;
                    try {
                        walk = StateMachine.path(f, from, to);
                    } catch (RefusedTransitionException e) {
                        assertThat(expected).as(f + ": " + from + " -> " + to + " refused").isEqualTo(-1);
                        continue;
                    }
                    assertThat(walk).as(f + ": " + from + " -> " + to).hasSize(expected);
                    DeviceState cur = from;
                    boolean inGroup = from.isSaving();
                    List<DeviceState> interior = new ArrayList<>(walk.subList(0, walk.size() - 1));
                    for (DeviceState next : walk) {
                        assertThat(arcs.get(cur)).as(f + ": arc " + cur + " -> " + next).contains(next);
                        cur = next;
                    }
                    for (DeviceState s : interior) {
                        inGroup = inGroup && s.isSaving();
                        assertThat(!s.isSaving() || inGroup).as(f + ": " + from + " -> " + to + " enters " + s).isTrue();
                    }
                }
            }
        }
        assertThat(pairs).isEqualTo(4 * 8 * 8);
    }

    @Test
    void refusesErrorAndUnsupportedStatesWithEinval() {
        assertThatThrownBy(() -> StateMachine.nextState(ALL, RUNNING, ERROR))
                .isInstanceOf(RefusedTransitionException.class)
                .hasMessageContaining("EINVAL").hasMessageContaining("ERROR cannot be requested");
        assertThatThrownBy(() -> StateMachine.nextState(STOP_COPY_ONLY, RUNNING, RUNNING_P2P))
                .hasMessageContaining("not supported");
        assertThatThrownBy(() -> StateMachine.nextState(WITH_P2P, PRE_COPY, RUNNING))
                .hasMessageContaining("current state PRE_COPY is not supported");
        assertThatThrownBy(() -> StateMachine.path(WITH_PRE_COPY, STOP_COPY, PRE_COPY))
                .hasMessageContaining("no path from STOP_COPY to PRE_COPY");
    }

    @Test
    void knowsWhichArcsOpenAndCloseDataSessions() {
        assertThat(StateMachine.opensSession(STOP, STOP_COPY)).isTrue();
        assertThat(StateMachine.opensSession(STOP, RESUMING)).isTrue();
        assertThat(StateMachine.opensSession(RUNNING, PRE_COPY)).isTrue();
        assertThat(StateMachine.opensSession(RUNNING_P2P, PRE_COPY_P2P)).isTrue();
        assertThat(StateMachine.opensSession(PRE_COPY, STOP_COPY)).isFalse();
        assertThat(StateMachine.opensSession(PRE_COPY_P2P, STOP_COPY)).isFalse();
        assertThat(StateMachine.closesSession(STOP_COPY, STOP)).isTrue();
        assertThat(StateMachine.closesSession(PRE_COPY, RUNNING)).isTrue();
        assertThat(StateMachine.closesSession(PRE_COPY_P2P, RUNNING_P2P)).isTrue();
        assertThat(StateMachine.closesSession(RESUMING, STOP)).isTrue();
        assertThat(StateMachine.closesSession(PRE_COPY, PRE_COPY_P2P)).isFalse();
        assertThat(StateMachine.closesSession(RUNNING, RUNNING_P2P)).isFalse();
    }

    @Test
    void parsesAndPrintsFlags() {
        assertThat(MigrationFlags.parse("stop_copy, p2p").bits()).isEqualTo(3);
        assertThat(ALL.toString()).isEqualTo("STOP_COPY,P2P,PRE_COPY");
        assertThatThrownBy(() -> MigrationFlags.parse("P2P")).hasMessageContaining("lack STOP_COPY");
        assertThatThrownBy(() -> MigrationFlags.parse("STOP_COPY,FOO")).hasMessageContaining("unknown migration flag 'FOO'");
        assertThat(DeviceState.of(7)).isEqualTo(PRE_COPY_P2P);
        assertThatThrownBy(() -> DeviceState.of(8)).isInstanceOf(IllegalArgumentException.class);
    }
}
