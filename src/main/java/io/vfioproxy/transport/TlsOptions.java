package io.vfioproxy.transport;

import io.vertx.core.http.ClientAuth;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.NetClientOptions;
import io.vertx.core.net.NetServerOptions;
import io.vertx.core.net.PemKeyCertOptions;
import io.vertx.core.net.PemTrustOptions;

/**
 * Mutual TLS between agents on the stream endpoint ("stream.tls" in conf/agent.json): each agent presents its
 * certificate and accepts only peers whose certificate the trust file's CA signed. Agents identify nodes, not
 * host names (a DaemonSet's pods are reached by IP), so the peer's host name is not checked against its
 * certificate; the CA is what admits a peer.
 *
 * @param certPath the agent's certificate chain (PEM)
 * @param keyPath the agent's private key (PEM)
 * @param trustPath the CA certificates that sign the agents' certificates (PEM)
 */
public record TlsOptions(String certPath, String keyPath, String trustPath) {

    /** Reads {@code {"certPath": ..., "keyPath": ..., "trustPath": ...}}; null when the object is absent. */
    public static TlsOptions fromJson(JsonObject json) {
        if (json == null || !json.getBoolean("enabled", true)) {
            return null;
        }
        String cert = json.getString("certPath");
        String key = json.getString("keyPath");
        String trust = json.getString("trustPath");
        if (cert == null || key == null || trust == null) {
            throw new IllegalArgumentException("stream.tls needs certPath, keyPath and trustPath (PEM files)");
        }
        return new TlsOptions(cert, key, trust);
    }

    void apply(NetServerOptions options) {
        options.setSsl(true)
                .setKeyCertOptions(new PemKeyCertOptions().setCertPath(certPath).setKeyPath(keyPath))
                .setTrustOptions(new PemTrustOptions().addCertPath(trustPath))
                .setClientAuth(ClientAuth.REQUIRED);
    }

    void apply(NetClientOptions options) {
        options.setSsl(true)
                .setKeyCertOptions(new PemKeyCertOptions().setCertPath(certPath).setKeyPath(keyPath))
                .setTrustOptions(new PemTrustOptions().addCertPath(trustPath))
                .setHostnameVerificationAlgorithm("");
    }
}
