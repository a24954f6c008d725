package io.vfioproxy.relay;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.util.ArrayList;
import java.util.List;

/**
 * The {@code relay} section of the agent's configuration.
 *
 * @param allowedTargets the target prefixes a destination connects to ({@code "unix:/var/run/kubevirt/"},
 *        {@code "tcp:127.0.0.1:"}); none by default, so an agent is no open proxy
 * @param listenDir where a relay's unix socket goes when its request names none
 * @param socketMode the mode of a relay's unix socket (0600)
 * @param socketOwner "uid:gid", "uid", "user:group" or "user" to give a relay's unix socket to (QEMU's user), or
 *        null to leave it the agent's
 * @param maxChannels the most connections one relay accepts (its main channel and multifd channels)
 * @param writeQueueMaxSize the hypervisor-side socket's write queue, bytes
 * @param receiveBufferMax the largest read from a hypervisor-side socket, bytes
 * @param openTimeoutMillis how long a channel may take to reach its target through the destination
 * @param idleTimeoutMillis how long a relay waits for its first connection, and how long its channels may move
 *        nothing at all, before it fails
 */
public record RelayOptions(List<String> allowedTargets, String listenDir, int socketMode, String socketOwner,
        int maxChannels, int writeQueueMaxSize, int receiveBufferMax, long openTimeoutMillis, long idleTimeoutMillis) {

    public RelayOptions {
        allowedTargets = List.copyOf(allowedTargets);
    }

    public static RelayOptions fromJson(JsonObject json) {
        JsonObject j = json == null ? new JsonObject() : json;
        List<String> allowed = new ArrayList<>();
        JsonArray list = j.getJsonArray("allowedTargets", new JsonArray());
        for (Object o : list) {
            String prefix = String.valueOf(o);
            // A prefix must be an address's start, so that "unix:/var/run" does not allow "unix:/var/runaway".
            RelayAddress.parse(prefix.endsWith(":") ? prefix + "0" : prefix, "relay.allowedTargets entry");
            allowed.add(prefix);
        }
        String dir = j.getString("listenDir", "");
        if (dir.isEmpty()) {
            dir = System.getProperty("java.io.tmpdir") + "/vmp-relays";
        }
        String mode = j.getString("socketMode", "0600");
        int socketMode;
        try {
            socketMode = Integer.parseInt(mode, 8);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("relay.socketMode '" + mode + "' is not an octal mode such as 0600");
        }
        if (socketMode < 0 || socketMode > 0777) {
            throw new IllegalArgumentException("relay.socketMode '" + mode + "' is out of range");
        }
        String owner = j.getString("socketOwner", "");
        return new RelayOptions(allowed, dir, socketMode, owner.isEmpty() ? null : owner, j.getInteger("maxChannels", 17),
                j.getInteger("writeQueueMaxSize", 4 << 20), j.getInteger("receiveBufferMax", 1 << 20),
                j.getLong("openTimeoutMillis", 10_000L), j.getLong("idleTimeoutMillis", 600_000L));
    }

    /**
     * Whether a destination may connect to {@code target}: it starts with an allowed prefix, and for unix sockets
     * no symbolic link takes it elsewhere.
     *
     * @return null when allowed, else why not
     */
    public String refusal(RelayAddress target) {
        String text = target.toString();
        if (allowedTargets.isEmpty()) {
            return "this agent allows no relay targets (relay.allowedTargets is empty)";
        }
        for (String prefix : allowedTargets) {
            if (text.startsWith(prefix) && resolvesInside(target, prefix)) {
                return null;
            }
        }
        return "target " + text + " is not under any of relay.allowedTargets " + allowedTargets;
    }

    private static boolean resolvesInside(RelayAddress target, String prefix) {
        if (!target.isUnix()) {
            return true;
        }
        java.nio.file.Path p = java.nio.file.Path.of(target.path());
        try {
            // The socket's directory as it really is: a link inside the allowed tree may point out of it.
            java.nio.file.Path real = p.getParent().toRealPath().resolve(p.getFileName());
            String base = prefix.substring("unix:".length());
            java.nio.file.Path realBase = java.nio.file.Path.of(base).toRealPath();
            return real.startsWith(realBase);
        } catch (java.io.IOException e) {
            // Not there (yet): the connect will fail with the reason.
            return true;
        }
    }
}
