package io.vfioproxy.stream;

import java.net.URI;
import java.net.URISyntaxException;

/**
 * Where a destination agent takes migration streams: its TCP stream endpoint ({@code host:7070}) or, for a
 * destination reachable only through HTTP infrastructure, its WebSocket endpoint ({@code ws://host:8080}, path
 * {@value #DEFAULT_WS_PATH}).
 *
 * @param scheme "tcp", "ws" or "wss"
 * @param host the host name or address
 * @param port the port
 * @param path the WebSocket path; "" for TCP
 */
public record StreamEndpoint(String scheme, String host, int port, String path) {

    public static final String DEFAULT_WS_PATH = "/v1/stream";

    /** A TCP endpoint. */
    public StreamEndpoint(String host, int port) {
        this("tcp", host, port, "");
    }

    public boolean isWebSocket() {
        return scheme.equals("ws") || scheme.equals("wss");
    }

    /** A wss:// endpoint: the WebSocket stream over TLS. */
    public boolean isTls() {
        return scheme.equals("wss");
    }

    /** Parses {@code host:port}, {@code tcp://host:port} or {@code ws[s]://host:port[/path]}. */
    public static StreamEndpoint parse(String text) {
        String t = text.trim();
        if (t.startsWith("ws://") || t.startsWith("wss://")) {
            boolean tls = t.startsWith("wss://");
            URI uri;
            try {
                uri = new URI(t);
            } catch (URISyntaxException e) {
                throw new IllegalArgumentException("destination '" + text + "' is not a ws:// URL");
            }
            if (uri.getHost() == null) {
                throw new IllegalArgumentException("destination '" + text + "' has no host");
            }
            String path = uri.getRawPath() == null || uri.getRawPath().isEmpty() ? DEFAULT_WS_PATH : uri.getRawPath();
            return new StreamEndpoint(tls ? "wss" : "ws", uri.getHost(),
                    uri.getPort() < 0 ? (tls ? 443 : 80) : uri.getPort(), path);
        }
        if (t.startsWith("tcp://")) {
            t = t.substring("tcp://".length());
        }
        int colon = t.lastIndexOf(':');
        if (colon <= 0 || colon == t.length() - 1 || t.contains("/")) {
            throw new IllegalArgumentException("destination '" + text + "' is not host:port or ws://host:port");
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
        String h = host.contains(":") ? "[" + host + "]" : host;
        return isWebSocket() ? scheme + "://" + h + ":" + port + path : h + ":" + port;
    }
}
