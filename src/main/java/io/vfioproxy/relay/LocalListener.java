package io.vfioproxy.relay;

import io.vertx.core.Future;
import io.vertx.core.Handler;
import io.vertx.core.Vertx;
import io.vertx.core.net.NetServer;
import io.vertx.core.net.NetServerOptions;
import io.vertx.core.net.NetSocket;
import io.vfioproxy.vertx.VertxInternals;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserPrincipal;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/**
 * The address a relay listens on for its hypervisor: a unix socket, or TCP on loopback. A unix socket gets its
 * mode and owner before anyone can connect to it: it is bound in a directory only the agent can enter, given its
 * mode and owner there, then moved into place.
 */
final class LocalListener {

    private final List<NetServer> servers;
    private final RelayAddress address;
    private final Path created;

    private LocalListener(List<NetServer> servers, RelayAddress address, Path created) {
        this.servers = servers;
        this.address = address;
        this.created = created;
    }

    /** The address as the hypervisor's migrate URI names it ({@code unix:/path}, {@code tcp:127.0.0.1:41234}). */
    RelayAddress address() {
        return address;
    }

    /**
     * Listens on {@code address} with {@code instances} servers, each on an event loop of its own: Vert.x hands
     * the connections to them in turn, so a hypervisor's channels (QEMU's multifd) are relayed in parallel. The
     * file system work runs on a worker.
     */
    static Future<LocalListener> open(Vertx vertx, RelayAddress address, int mode, String owner, int instances,
            Handler<NetSocket> onConnection) {
        if (!address.isUnix()) {
            // Servers on one Vert.x listening on port 0 share the port the first one got.
            return listenFirst(vertx, onConnection, address.socketAddress()).compose(first -> {
                int port = first.get(0).actualPort();
                return listenMore(vertx, instances, onConnection, address.socketAddress(), first)
                        .map(all -> new LocalListener(all, address.withPort(port), null));
            });
        }
        Path target = Path.of(address.path());
        return vertx.executeBlocking(() -> {
            if (Files.exists(target, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                throw new IllegalArgumentException("listen " + address + ": the path exists already");
            }
            Files.createDirectories(target.getParent());
            return Files.createTempDirectory(target.getParent(), ".vmp-", PosixFilePermissions.asFileAttribute(
                    EnumSet.of(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE,
                            PosixFilePermission.OWNER_EXECUTE)));
        }).compose(dir -> {
            Path bound = dir.resolve("s");
            io.vertx.core.net.SocketAddress at = io.vertx.core.net.SocketAddress.domainSocketAddress(bound.toString());
            List<NetServer> opened = new ArrayList<>();
            return listenFirst(vertx, onConnection, at).compose(first -> {
                opened.addAll(first);
                return listenMore(vertx, instances, onConnection, at, first);
            }).compose(all -> vertx.executeBlocking(() -> {
                Files.setPosixFilePermissions(bound, permissions(mode));
                if (owner != null) {
                    chown(bound, owner);
                }
                Files.move(bound, target, StandardCopyOption.ATOMIC_MOVE);
                Files.delete(dir);
                return new LocalListener(all, address, target);
            })).recover(e -> Future.join(opened.stream().map(NetServer::close).toList())
                    .eventually(() -> vertx.executeBlocking(() -> {
                        Files.deleteIfExists(bound);
                        Files.deleteIfExists(dir);
                        return null;
                    })).transform(ignored -> Future.failedFuture(new IllegalArgumentException("listen " + address
                            + ": " + e.getMessage(), e))));
        });
    }

    /** The first server listening at {@code at}, from a new event-loop context. */
    private static Future<List<NetServer>> listenFirst(Vertx vertx, Handler<NetSocket> onConnection,
            io.vertx.core.net.SocketAddress at) {
        return listenOne(vertx, onConnection, at).map(s -> new ArrayList<>(List.of(s)));
    }

    /** The rest of {@code instances} servers sharing {@code at} with {@code first}, each on its own event loop. */
    private static Future<List<NetServer>> listenMore(Vertx vertx, int instances, Handler<NetSocket> onConnection,
            io.vertx.core.net.SocketAddress at, List<NetServer> first) {
        List<Future<NetServer>> more = new ArrayList<>();
        for (int i = first.size(); i < instances; i++) {
            more.add(listenOne(vertx, onConnection, at));
        }
        return Future.all(more).map(v -> {
            List<NetServer> all = new ArrayList<>(first);
            more.forEach(f -> all.add(f.result()));
            return all;
        }).recover(e -> {
            first.forEach(NetServer::close);
            more.forEach(f -> {
                if (f.succeeded()) {
                    f.result().close();
                }
            });
            return Future.failedFuture(e);
        });
    }

    private static Future<NetServer> listenOne(Vertx vertx, Handler<NetSocket> onConnection,
            io.vertx.core.net.SocketAddress at) {
        io.vertx.core.Promise<NetServer> listening = io.vertx.core.Promise.promise();
        VertxInternals.newEventLoopContext(vertx).runOnContext(v -> {
            NetServer server = vertx.createNetServer(new NetServerOptions().setTcpNoDelay(true)
                    .setReceiveBufferSize(4 << 20).setSendBufferSize(4 << 20));
            server.connectHandler(onConnection);
            server.listen(at).map(server).onComplete(listening);
        });
        return listening.future();
    }

    static Set<PosixFilePermission> permissions(int mode) {
        Set<PosixFilePermission> p = EnumSet.noneOf(PosixFilePermission.class);
        PosixFilePermission[] bits = {PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE,
            PosixFilePermission.OTHERS_READ, PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE,
            PosixFilePermission.GROUP_READ, PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE,
            PosixFilePermission.OWNER_READ};
        for (int i = 0; i < bits.length; i++) {
            if ((mode & (1 << i)) != 0) {
                p.add(bits[i]);
            }
        }
        return p;
    }

    /** {@code owner}: "uid", "uid:gid", "user" or "user:group". */
    private static void chown(Path path, String owner) throws IOException {
        String[] parts = owner.split(":", 2);
        if (parts[0].chars().allMatch(Character::isDigit) && !parts[0].isEmpty()) {
            Files.setAttribute(path, "unix:uid", Integer.parseInt(parts[0]));
            if (parts.length == 2) {
                Files.setAttribute(path, "unix:gid", Integer.parseInt(parts[1]));
            }
            return;
        }
        UserPrincipalLookupService lookup = path.getFileSystem().getUserPrincipalLookupService();
        UserPrincipal user = lookup.lookupPrincipalByName(parts[0]);
        PosixFileAttributeView view = Files.getFileAttributeView(path, PosixFileAttributeView.class);
        view.setOwner(user);
        if (parts.length == 2) {
            GroupPrincipal group = lookup.lookupPrincipalByGroupName(parts[1]);
            view.setGroup(group);
        }
    }

    /** Stops listening and removes the socket file. Connections already accepted stay. */
    Future<Void> close(Vertx vertx) {
        Future<Void> closed = Future.join(servers.stream().map(NetServer::close).toList()).mapEmpty();
        if (created == null) {
            return closed;
        }
        return closed.eventually(() -> vertx.executeBlocking(() -> Files.deleteIfExists(created))).mapEmpty();
    }
}
