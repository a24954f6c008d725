package io.vfioproxy.migration;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vfioproxy.device.DeviceHandle;
import io.vfioproxy.device.DeviceRegistry;
import io.vfioproxy.migration.MigrationEvents.Lifecycle;
import io.vfioproxy.migration.MigrationStatus.Outcome;
import io.vfioproxy.migration.MigrationStatus.Role;
import io.vfioproxy.uapi.DeviceState;
import java.util.ArrayList;
import java.util.List;

/**
 * What an agent does at start with the journal its predecessor left ({@link Journal}): every migration still in it
 * was interrupted by the end of that process. A source that had not committed gets its devices back in the state
 * they had when it began (RUNNING, or STOP); a committed one leaves them stopped, the destination holding the
 * state. A destination that had not loaded the state resets its devices; one that had keeps it in STOP, held for
 * the migration, for its consumer or a discard. Each is reported as a failure with the reason and the journal's
 * last phase, published and kept in the migrations list; a file that cannot be read is reported and left.
 */
final class Reconciler {

    private final Vertx vertx;
    private final String agent;
    private final DeviceRegistry devices;
    private final Journal journal;
    private final MigrationRegistry registry;
    private final MigrationEvents events;

    Reconciler(Vertx vertx, String agent, DeviceRegistry devices, Journal journal, MigrationRegistry registry,
            MigrationEvents events) {
        this.vertx = vertx;
        this.agent = agent;
        this.devices = devices;
        this.journal = journal;
        this.registry = registry;
        this.events = events;
    }

    /** Reads the journal (on a worker), puts each interrupted migration's devices right, and reports it. */
    Future<List<MigrationRecord>> run() {
        if (!journal.enabled()) {
            return Future.succeededFuture(List.of());
        }
        return vertx.executeBlocking(() -> {
            journal.open();
            return journal.read();
        }).compose(contents -> {
            List<Future<MigrationRecord>> done = new ArrayList<>();
            // Agents sharing a node's directory (two on one machine) each take only their own entries.
            contents.entries().stream().filter(e -> agent.equals(e.agent())).forEach(e -> done.add(reconcile(e)));
            List<MigrationRecord> records = new ArrayList<>();
            for (Journal.Unreadable u : contents.unreadable()) {
                records.add(report(u));
            }
            return Future.join(done).map(all -> {
                done.stream().filter(Future::succeeded).forEach(f -> records.add(f.result()));
                return records;
            });
        });
    }

    private String cause(Journal.Entry e) {
        return "migration " + e.id() + ": recovery after the agent restarted";
    }

    private Future<MigrationRecord> reconcile(Journal.Entry e) {
        String interrupted = "agent " + agent + " stopped during this migration, in phase " + e.phase()
                + " (from its journal)";
        List<Future<DeviceState>> states = new ArrayList<>();
        String outcome;
        if (e.role() == Role.SOURCE && !e.committed()) {
            for (Journal.Device d : e.devices()) {
                states.add(resume(d));
            }
            outcome = "; the source devices are back in the state they had before it";
        } else if (e.role() == Role.SOURCE) {
            for (Journal.Device d : e.devices()) {
                states.add(stop(d, e));
            }
            outcome = "; it had committed: the destination holds the state and the source devices stay stopped";
        } else if (!e.committed()) {
            for (Journal.Device d : e.devices()) {
                DeviceHandle h = devices.find(d.name());
                states.add(h == null ? missing(d) : DeviceSafety.reset(h, cause(e)));
            }
            outcome = "; the destination devices were reset";
        } else if (e.phase() == Phase.STARTING) {
            // The source's START had come (the phase is recorded only after it): finish what it asked for.
            for (Journal.Device d : e.devices()) {
                DeviceHandle h = devices.find(d.name());
                states.add(h == null ? missing(d) : start(h, e));
            }
            outcome = "; it had been told to start: the destination devices run (a PCI function stays in STOP, held "
                    + "for its consumer)";
        } else {
            for (Journal.Device d : e.devices()) {
                DeviceHandle h = devices.find(d.name());
                if (h == null) {
                    states.add(missing(d));
                    continue;
                }
                states.add(hold(h, e));
            }
            outcome = "; the destination had loaded the state: a device in STOP keeps it, held for its consumer "
                    + "(POST /v1/devices/{name}/release)";
        }
        return Future.join(states).transform(ignored -> {
            MigrationRecord record = registry.register(MigrationStatus.begin(e.id(), e.role(), agent,
                    MigrationRequest.Mode.STOP_COPY, e.phase()));
            if (record == null) {
                return Future.failedFuture("migration " + e.id() + " is running again");
            }
            MigrationStatus done = record.update(s -> s.end(Outcome.FAILED, e.phase(), interrupted + outcome,
                    DeviceSafety.describe(states), null, null));
            registry.ended(record);
            events.publish(done, Lifecycle.FAILED);
            return vertx.executeBlocking(() -> {
                journal.remove(e);
                return record;
            });
        });
    }

    /**
     * A destination device that holds the loaded state (STOP) is held for the migration. One found on its way to
     * RUNNING (RUNNING_P2P) can only have left STOP on the source's START: its start is finished.
     */
    private Future<DeviceState> hold(DeviceHandle h, Journal.Entry e) {
        return h.state().compose(s -> {
            if (s == DeviceState.RUNNING_P2P && h.policy().endState() == DeviceState.RUNNING) {
                return start(h, e);
            }
            if (s == DeviceState.STOP) {
                h.holdFor(e.id());
            }
            return Future.succeededFuture(s);
        });
    }

    /** A destination device told to start: on to RUNNING where its policy runs it, else held in STOP. */
    private Future<DeviceState> start(DeviceHandle h, Journal.Entry e) {
        if (h.policy().endState() != DeviceState.RUNNING) {
            return hold(h, e);
        }
        return h.submit(dc -> {
            dc.refreshState("recovery");
            if (dc.state() == DeviceState.STOP || dc.state() == DeviceState.RUNNING_P2P) {
                dc.setState(DeviceState.RUNNING, DeviceState.ERROR, cause(e) + ": start after migration");
            }
            return dc.state();
        });
    }

    /** A source device back to the state it had when the migration began, closing what the dead agent left. */
    private Future<DeviceState> resume(Journal.Device d) {
        DeviceState before = "STOP".equals(d.before()) ? DeviceState.STOP : DeviceState.RUNNING;
        return moveTo(d, before, "recovery after the agent restarted");
    }

    /** A committed source device to STOP, as the dead agent's commit would have left it (from STOP_COPY). */
    private Future<DeviceState> stop(Journal.Device d, Journal.Entry e) {
        DeviceHandle h = devices.find(d.name());
        if (h != null) {
            h.stateMovedBy(e.id());
        }
        return moveTo(d, DeviceState.STOP, "recovery after the agent restarted: committed");
    }

    /** The device, as it is now, to {@code target} unless it is there already (recover ERROR). */
    private Future<DeviceState> moveTo(Journal.Device d, DeviceState target, String cause) {
        DeviceHandle h = devices.find(d.name());
        if (h == null) {
            return missing(d);
        }
        return h.submit(dc -> {
            dc.refreshState("recovery");
            if (dc.state() != target) {
                dc.setState(target, DeviceState.ERROR, cause);
            }
            return dc.state();
        });
    }

    private Future<DeviceState> missing(Journal.Device d) {
        return Future.failedFuture("device " + d.name() + " is not open on agent " + agent);
    }

    private MigrationRecord report(Journal.Unreadable u) {
        String id = "journal:" + u.file().getFileName();
        MigrationRecord record = registry.register(MigrationStatus.begin(id, Role.SOURCE, agent,
                MigrationRequest.Mode.STOP_COPY, Phase.CONNECTING));
        MigrationStatus done = record.update(s -> s.end(Outcome.FAILED, Phase.CONNECTING, "journal file " + u.file()
                + " cannot be read (" + u.reason() + "); it is left in place: its devices may need an operator",
                "unknown", null, null));
        registry.ended(record);
        events.publish(done, Lifecycle.FAILED);
        return record;
    }
}
