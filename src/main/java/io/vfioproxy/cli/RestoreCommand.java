package io.vfioproxy.cli;

import io.vertx.core.json.JsonObject;
import io.vfioproxy.migration.Checkpoint;
import io.vfioproxy.migration.MigrationOptions;
import io.vfioproxy.util.ByteSize;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Loads a device's migration state from a file. */
@Command(name = "restore", mixinStandardHelpOptions = true,
        description = "Load a saved state into a device (RESUMING, STOP, RUNNING). Every frame's checksum and the "
                + "device's own validation are checked; a file of another kind of device is refused.")
public final class RestoreCommand implements Callable<Integer> {

    @Mixin
    LocalDeviceOptions target;

    @Option(names = "--in", required = true, description = "the checkpoint file to read")
    Path in;

    @Override
    public Integer call() {
        try {
            Checkpoint.Result r = target.run((vertx, handle) ->
                    Checkpoint.restore(vertx, handle, in, MigrationOptions.fromJson(new JsonObject())));
            System.out.printf("restored %s from %s into %s; device is %s%n", ByteSize.format(r.dataBytes()), in,
                    target.device, r.deviceState());
            return 0;
        } catch (RuntimeException e) {
            System.err.println("restore failed: " + e.getMessage());
            return 1;
        }
    }
}
