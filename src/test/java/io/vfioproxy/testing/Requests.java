package io.vfioproxy.testing;

import io.vfioproxy.migration.MigrationRequest;
import io.vfioproxy.migration.MigrationRequest.DevicePair;
import io.vfioproxy.migration.MigrationRequest.Mode;
import io.vfioproxy.stream.StreamEndpoint;
import java.util.Arrays;
import java.util.List;

/** Migration requests as the tests make them. */
public final class Requests {

    private Requests() {
    }

    /**
     * One migration of {@code devices}, each to the destination's device of the same name, with an automatic
     * switchover, the default downtime limit and pre-copy budget, and the agent's chunk size.
     */
    public static MigrationRequest sameNames(StreamEndpoint to, Mode mode, String... devices) {
        List<DevicePair> pairs = Arrays.stream(devices).map(d -> new DevicePair(d, d)).toList();
        return new MigrationRequest(pairs, to, mode, false, 300, 30_000, 0, false);
    }
}
