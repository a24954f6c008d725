package io.vfioproxy.transport;

/**
 * Where a destination agent's stream endpoint listens: {@code host:port} for TCP.
 *
 * @param host the host name or address
 * @param port the TCP port
 */
public record StreamEndpoint(String host, int port) {

    /** Parses {@code host:port} ({@code [v6addr]:port} for IPv6). */
    public static StreamEndpoint parse(String text) {
        String t = text.trim();
        if (t.startsWith("tcp://")) {
            t = t.substring("tcp://".length());
        }
        int colon = t.lastIndexOf(':');
        if (colon <= 0 || colon == t.length() - 1) {
            throw new IllegalArgumentException("destination '" + text + "' is not host:port");
        }
        String host = t.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(t.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("destination '" + text + "' has no numeric port");
        }
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException("destination '" + text + "': port out of range");
        }
        return new StreamEndpoint(host, port);
    }

    @Override
    public String toString() {
        return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
    }
}
