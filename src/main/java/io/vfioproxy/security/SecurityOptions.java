package io.vfioproxy.security;

import io.vertx.core.json.JsonObject;

/**
 * The {@code security} section of the agent's configuration: one setting for every endpoint. On (the default),
 * the TCP stream endpoint and the WebSocket stream take only peers whose certificate the CA signed (mutual TLS),
 * the HTTP API is served over TLS, and every API route but the health checks (and the metrics, if they are made
 * public) needs a bearer token. Off only by saying so: {@code "insecure": true}.
 *
 * @param insecure no TLS and no tokens anywhere (loopback trials, the demo, the bench); warned about at every start
 * @param certPath the agent's certificate chain (PEM; a Kubernetes TLS Secret's tls.crt)
 * @param keyPath the agent's private key (PEM, PKCS#8 or PKCS#1; tls.key)
 * @param caPath the CA certificates that sign the agents' certificates (PEM; ca.crt)
 * @param readTokens the file of the read tokens, one a line
 * @param controlTokens the file of the control tokens, one a line
 * @param metricsPublic whether /metrics answers without a token (a Prometheus that scrapes without one)
 * @param reloadMillis how often the files are read again for a rotated certificate or token
 */
public record SecurityOptions(boolean insecure, String certPath, String keyPath, String caPath, String readTokens,
        String controlTokens, boolean metricsPublic, long reloadMillis) {

    /** No TLS and no tokens: for the demo, the bench and tests on loopback. */
    public static final SecurityOptions INSECURE = new SecurityOptions(true, null, null, null, null, null, true,
            10_000);

    public static SecurityOptions fromJson(JsonObject json) {
        JsonObject j = json == null ? new JsonObject() : json;
        boolean insecure = j.getBoolean("insecure", false);
        JsonObject tls = j.getJsonObject("tls", new JsonObject());
        JsonObject tokens = j.getJsonObject("tokens", new JsonObject());
        SecurityOptions o = new SecurityOptions(insecure, blankToNull(tls.getString("certPath")),
                blankToNull(tls.getString("keyPath")), blankToNull(tls.getString("caPath")),
                blankToNull(tokens.getString("read")), blankToNull(tokens.getString("control")),
                j.getBoolean("metricsPublic", false), j.getLong("reloadMillis", 10_000L));
        if (!insecure) {
            require(o.certPath, "security.tls.certPath");
            require(o.keyPath, "security.tls.keyPath");
            require(o.caPath, "security.tls.caPath");
            require(o.readTokens, "security.tokens.read");
            require(o.controlTokens, "security.tokens.control");
        }
        return o;
    }

    private static String blankToNull(String s) {
        return s == null || s.isBlank() ? null : s;
    }

    private static void require(String value, String key) {
        if (value == null) {
            throw new IllegalArgumentException("security is on and " + key + " is not set (or set "
                    + "security.insecure to true, VMP_SECURITY_INSECURE=true, to run in the clear)");
        }
    }

    public boolean secure() {
        return !insecure;
    }
}
