package io.vfioproxy.relay;

import io.vertx.core.net.SocketAddress;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;

/**
 * A hypervisor-side address of a relay: {@code unix:/path} or {@code tcp:host:port}, as QEMU writes its migration
 * URIs.
 *
 * @param path the socket's path, for unix; normalized
 * @param host the host, for tcp
 * @param port the port, for tcp (0: any, for a listen address)
 */
public record RelayAddress(String path, String host, int port) {

    /** Parses {@code unix:/absolute/path} or {@code tcp:host:port}; {@code what} names it in errors. */
    public static RelayAddress parse(String text, String what) {
        if (text == null || text.isBlank()) {
            throw new IllegalArgumentException(what + " is required: unix:/path or tcp:host:port");
        }
        if (text.startsWith("unix:")) {
            String p = text.substring("unix:".length());
            if (!p.startsWith("/")) {
                throw new IllegalArgumentException(what + " '" + text + "': the unix socket path must be absolute");
            }
            String normalized = Path.of(p).normalize().toString();
            if (normalized.length() > 107) {
                throw new IllegalArgumentException(what + " '" + text + "': a unix socket path has at most 107 bytes");
            }
            return new RelayAddress(normalized, null, -1);
        }
        if (text.startsWith("tcp:")) {
            String hp = text.substring("tcp:".length());
            int colon = hp.lastIndexOf(':');
            if (colon <= 0) {
                throw new IllegalArgumentException(what + " '" + text + "' is not tcp:host:port");
            }
            String host = hp.substring(0, colon);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            }
            int port;
            try {
                port = Integer.parseInt(hp.substring(colon + 1));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(what + " '" + text + "' has no numeric port");
            }
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException(what + " '" + text + "': port out of range");
            }
            return new RelayAddress(null, host, port);
        }
        throw new IllegalArgumentException(what + " '" + text + "' is neither unix:/path nor tcp:host:port");
    }

    public boolean isUnix() {
        return path != null;
    }

    /** Whether a tcp address is on this host only (127.0.0.0/8, ::1, localhost). */
    public boolean isLoopback() {
        if (isUnix()) {
            return true;
        }
        try {
            return InetAddress.getByName(host).isLoopbackAddress();
        } catch (UnknownHostException e) {
            return false;
        }
    }

    public SocketAddress socketAddress() {
        return isUnix() ? SocketAddress.domainSocketAddress(path) : SocketAddress.inetSocketAddress(port, host);
    }

    /** The same address with {@code actualPort}, where this one said 0. */
    public RelayAddress withPort(int actualPort) {
        return isUnix() ? this : new RelayAddress(null, host, actualPort);
    }

    @Override
    public String toString() {
        return isUnix() ? "unix:" + path : "tcp:" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
    }
}
