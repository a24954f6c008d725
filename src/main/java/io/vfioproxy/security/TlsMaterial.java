package io.vfioproxy.security;

import io.netty.handler.ssl.OpenSsl;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.ClientAuth;
import io.vertx.core.http.HttpServerOptions;
import io.vertx.core.http.WebSocketClientOptions;
import io.vertx.core.net.ClientSSLOptions;
import io.vertx.core.net.JdkSSLEngineOptions;
import io.vertx.core.net.NetClientOptions;
import io.vertx.core.net.NetServerOptions;
import io.vertx.core.net.OpenSSLEngineOptions;
import io.vertx.core.net.PemKeyCertOptions;
import io.vertx.core.net.PemTrustOptions;
import io.vertx.core.net.SSLEngineOptions;
import io.vertx.core.net.ServerSSLOptions;
import java.util.Arrays;

/**
 * An agent's TLS identity as its files held it when read: its certificate chain and key, and the CA that signs
 * the agents. Servers and clients are configured from it, and updated from the next one when the files change
 * (new handshakes use it; open connections keep theirs). Agents identify nodes, not host names (a DaemonSet's
 * pods are reached by IP), so a peer's host name is not checked against its certificate: the CA admits a peer.
 */
public final class TlsMaterial {

    private final byte[] cert;
    private final byte[] key;
    private final byte[] ca;

    public TlsMaterial(byte[] cert, byte[] key, byte[] ca) {
        this.cert = cert.clone();
        this.key = key.clone();
        this.ca = ca.clone();
    }

    private PemKeyCertOptions identity() {
        return new PemKeyCertOptions().setCertValue(Buffer.buffer(cert)).setKeyValue(Buffer.buffer(key));
    }

    private PemTrustOptions trust() {
        return new PemTrustOptions().addCertValue(Buffer.buffer(ca));
    }

    /** A server's options: {@code clientAuth} REQUIRED for the stream endpoint, REQUEST for the API. */
    public ServerSSLOptions server(ClientAuth clientAuth) {
        return new ServerSSLOptions().setKeyCertOptions(identity()).setTrustOptions(trust())
                .setClientAuth(clientAuth);
    }

    /**
     * The same identity as a Netty TLS context for a server that requires client certificates (the TCP stream
     * endpoint, which starts TLS on each connection itself). Blocking: it parses the keys.
     */
    public SslContext streamServer(Vertx vertx) throws Exception {
        return SslContextBuilder.forServer(identity().getKeyManagerFactory(vertx))
                .trustManager(trust().getTrustManagerFactory(vertx))
                .clientAuth(io.netty.handler.ssl.ClientAuth.REQUIRE)
                .protocols("TLSv1.3", "TLSv1.2")
                .sslProvider(OpenSsl.isAvailable() ? SslProvider.OPENSSL : SslProvider.JDK) // as engine() chooses
                .build();
    }

    /**
     * The TLS engine: BoringSSL (netty-tcnative, Netty's OpenSSL engine) where its native library loads, which
     * moves the stream at several times the JDK engine's speed (docs/BENCHMARKS.md); the JDK's elsewhere, or when
     * {@code -Dio.netty.handler.ssl.noOpenSsl=true} turns it off.
     */
    public static SSLEngineOptions engine() {
        return OpenSsl.isAvailable() ? new OpenSSLEngineOptions() : new JdkSSLEngineOptions();
    }

    /** Which engine {@link #engine()} chose, for the start line and the bench. */
    public static String engineName() {
        return OpenSsl.isAvailable() ? "OpenSSL (" + OpenSsl.versionString() + ")" : "JDK";
    }

    public ClientSSLOptions client() {
        return new ClientSSLOptions().setKeyCertOptions(identity()).setTrustOptions(trust())
                .setHostnameVerificationAlgorithm("");
    }

    public void apply(NetServerOptions options, ClientAuth clientAuth) {
        options.setSsl(true).setSslEngineOptions(engine()).setKeyCertOptions(identity()).setTrustOptions(trust())
                .setClientAuth(clientAuth);
    }

    public void apply(HttpServerOptions options, ClientAuth clientAuth) {
        options.setSsl(true).setSslEngineOptions(engine()).setKeyCertOptions(identity()).setTrustOptions(trust())
                .setClientAuth(clientAuth);
    }

    public void apply(NetClientOptions options) {
        options.setSsl(true).setSslEngineOptions(engine()).setKeyCertOptions(identity()).setTrustOptions(trust())
                .setHostnameVerificationAlgorithm("");
    }

    public void apply(WebSocketClientOptions options) {
        options.setSsl(true).setSslEngineOptions(engine()).setVerifyHost(false).setKeyCertOptions(identity())
                .setTrustOptions(trust());
    }

    /** Whether {@code other} holds the same files' contents. */
    public boolean sameAs(TlsMaterial other) {
        return other != null && Arrays.equals(cert, other.cert) && Arrays.equals(key, other.key)
                && Arrays.equals(ca, other.ca);
    }
}
