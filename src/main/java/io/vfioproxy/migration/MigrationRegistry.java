package io.vfioproxy.migration;

import io.vfioproxy.migration.MigrationStatus.Role;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The migrations an agent took part in, by id and role (an agent migrating to itself is both), for the API.
 * Active ones are always kept; of the ended ones, the {@value #KEEP_ENDED} that ended last.
 */
public final class MigrationRegistry {

    static final int KEEP_ENDED = 1000;

    private record Key(String id, Role role) {
    }

    private final Map<Key, MigrationRecord> records = new ConcurrentHashMap<>();
    private final ConcurrentLinkedDeque<MigrationRecord> ended = new ConcurrentLinkedDeque<>();
    private final AtomicLong sequence = new AtomicLong();

    /**
     * Registers a migration that begins with {@code initial}.
     *
     * @return the record, or null when this agent already runs a migration with that id in that role
     */
    MigrationRecord register(MigrationStatus initial) {
        Key key = new Key(initial.id(), initial.role());
        MigrationRecord record = new MigrationRecord(initial, sequence.incrementAndGet());
        MigrationRecord kept = records.compute(key, (k, old) ->
                old == null || old.status().outcome() != MigrationStatus.Outcome.ACTIVE ? record : old);
        return kept == record ? record : null;
    }

    /** Notes that {@code record} ended, and forgets the oldest ended ones past the limit. */
    void ended(MigrationRecord record) {
        ended.addLast(record);
        while (ended.size() > KEEP_ENDED) {
            MigrationRecord old = ended.pollFirst();
            if (old != null) {
                records.remove(new Key(old.id(), old.role()), old);
            }
        }
    }

    /** The migration with this id; the source side first where this agent is both. */
    public MigrationRecord find(String id) {
        MigrationRecord source = records.get(new Key(id, Role.SOURCE));
        return source != null ? source : records.get(new Key(id, Role.DESTINATION));
    }

    /** Every migration known, in the order they began. */
    public List<MigrationRecord> all() {
        List<MigrationRecord> list = new ArrayList<>(records.values());
        list.sort(Comparator.comparingLong(MigrationRecord::sequence));
        return list;
    }
}
