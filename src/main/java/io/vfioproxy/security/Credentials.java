package io.vfioproxy.security;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.Date;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * What an agent authenticates with and by: its TLS identity and the tokens it accepts, read from files as a
 * Kubernetes Secret mounts them, and read again every {@code reloadMillis}: a rotated certificate reaches every
 * server and client that registered ({@link #onTlsChange}), new tokens replace the old. A file that cannot be read
 * or parsed stops the agent at start, naming it; at a reload it is reported and the last good content stays.
 */
public final class Credentials {

    private static final System.Logger LOG = System.getLogger("io.vfioproxy.security");

    private final SecurityOptions options;
    private final List<Consumer<TlsMaterial>> tlsListeners = new CopyOnWriteArrayList<>();
    private volatile TlsMaterial tls;
    private volatile Tokens tokens;
    private volatile String lastReloadProblem;
    private long timer = -1;

    private Credentials(SecurityOptions options, TlsMaterial tls, Tokens tokens) {
        this.options = options;
        this.tls = tls;
        this.tokens = tokens;
    }

    /** No TLS, no tokens. */
    public static Credentials insecure() {
        return new Credentials(SecurityOptions.INSECURE, null, null);
    }

    /** Reads every file now (on a worker); fails naming the first that cannot be used. */
    public static Future<Credentials> load(Vertx vertx, SecurityOptions options) {
        if (options.insecure()) {
            return Future.succeededFuture(new Credentials(options, null, null));
        }
        return vertx.executeBlocking(() -> new Credentials(options, readTls(options), readTokens(options)));
    }

    public boolean secure() {
        return options.secure();
    }

    public SecurityOptions options() {
        return options;
    }

    /** The TLS identity now, or null when insecure. */
    public TlsMaterial tls() {
        return tls;
    }

    /** The tokens now, or null when insecure. */
    public Tokens tokens() {
        return tokens;
    }

    /** Called with the new identity whenever the files change. */
    public void onTlsChange(Consumer<TlsMaterial> listener) {
        tlsListeners.add(listener);
    }

    /** Reads the files every {@code reloadMillis} from now on. */
    public void startReloading(Vertx vertx) {
        if (options.insecure() || timer >= 0) {
            return;
        }
        timer = vertx.setPeriodic(options.reloadMillis(), id -> vertx.executeBlocking(this::reload, false));
    }

    public void stopReloading(Vertx vertx) {
        if (timer >= 0) {
            vertx.cancelTimer(timer);
            timer = -1;
        }
    }

    /** Reads the files again; applies what changed. Blocking. */
    public Void reload() {
        try {
            TlsMaterial next = readTls(options);
            if (!next.sameAs(tls)) {
                tls = next;
                LOG.log(System.Logger.Level.INFO, "security: the certificate files changed; new handshakes use them");
                tlsListeners.forEach(l -> l.accept(next));
            }
            tokens = readTokens(options);
            lastReloadProblem = null;
        } catch (IllegalArgumentException e) {
            if (!e.getMessage().equals(lastReloadProblem)) {
                lastReloadProblem = e.getMessage();
                LOG.log(System.Logger.Level.WARNING, "security: " + e.getMessage() + "; the last good files stay in use");
            }
        }
        return null;
    }

    private static byte[] read(String path, String what) {
        try {
            return Files.readAllBytes(Path.of(path));
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException(what + " " + path + " does not exist");
        } catch (AccessDeniedException e) {
            throw new IllegalArgumentException(what + " " + path + " cannot be read: permission denied");
        } catch (IOException e) {
            throw new IllegalArgumentException(what + " " + path + " cannot be read: " + e.getMessage());
        }
    }

    private static TlsMaterial readTls(SecurityOptions o) {
        byte[] cert = read(o.certPath(), "certificate file (security.tls.certPath)");
        byte[] key = read(o.keyPath(), "key file (security.tls.keyPath)");
        byte[] ca = read(o.caPath(), "CA file (security.tls.caPath)");
        List<X509Certificate> own = certificates(cert, o.certPath());
        certificates(ca, o.caPath());
        String keyText = new String(key, StandardCharsets.US_ASCII);
        if (!keyText.contains("PRIVATE KEY-----")) {
            throw new IllegalArgumentException("key file " + o.keyPath() + " holds no PEM private key");
        }
        checkPair(keyText, own.get(0), o);
        try {
            own.get(0).checkValidity(new Date());
        } catch (CertificateException e) {
            LOG.log(System.Logger.Level.WARNING, "security: the certificate in " + o.certPath() + " is not valid now ("
                    + e.getMessage() + "): peers will refuse it");
        }
        return new TlsMaterial(cert, key, ca);
    }

    /**
     * Fails unless the key belongs to the certificate: files replaced one after the other (not as a Secret swaps
     * them, all at once) are caught between the two, and the last good pair stays in use until both are new. Only
     * PKCS#8 keys ("PRIVATE KEY") can be checked with the JDK; PKCS#1 and SEC1 keys are taken as they are.
     */
    private static void checkPair(String keyPem, X509Certificate certificate, SecurityOptions o) {
        if (!keyPem.contains("-----BEGIN PRIVATE KEY-----")) {
            return;
        }
        boolean matches;
        try {
            PublicKey publicKey = certificate.getPublicKey();
            PrivateKey key = CertificateAuthority.privateKey(keyPem, publicKey.getAlgorithm());
            String algorithm = publicKey.getAlgorithm().equals("EC") ? "SHA256withECDSA" : "SHA256with"
                    + publicKey.getAlgorithm();
            byte[] challenge = "vfio-migration-proxy key check".getBytes(StandardCharsets.US_ASCII);
            Signature signer = Signature.getInstance(algorithm);
            signer.initSign(key);
            signer.update(challenge);
            byte[] signature = signer.sign();
            Signature verifier = Signature.getInstance(algorithm);
            verifier.initVerify(publicKey);
            verifier.update(challenge);
            matches = verifier.verify(signature);
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            throw new IllegalArgumentException("the key in " + o.keyPath() + " cannot be checked against the "
                    + "certificate in " + o.certPath() + ": " + e.getMessage());
        }
        if (!matches) {
            throw new IllegalArgumentException("the key in " + o.keyPath() + " does not belong to the certificate in "
                    + o.certPath());
        }
    }

    private static List<X509Certificate> certificates(byte[] pem, String path) {
        try {
            List<X509Certificate> certs = CertificateFactory.getInstance("X.509")
                    .generateCertificates(new ByteArrayInputStream(pem)).stream().map(X509Certificate.class::cast)
                    .toList();
            if (certs.isEmpty()) {
                throw new IllegalArgumentException("certificate file " + path + " holds no certificate");
            }
            return certs;
        } catch (CertificateException e) {
            throw new IllegalArgumentException("certificate file " + path + " cannot be parsed: " + e.getMessage());
        }
    }

    private static Tokens readTokens(SecurityOptions o) {
        String read = new String(read(o.readTokens(), "token file (security.tokens.read)"), StandardCharsets.UTF_8);
        String control = new String(read(o.controlTokens(), "token file (security.tokens.control)"),
                StandardCharsets.UTF_8);
        return Tokens.parse(o.readTokens(), read, o.controlTokens(), control);
    }
}
