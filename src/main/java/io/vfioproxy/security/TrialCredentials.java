package io.vfioproxy.security;

import io.vertx.core.json.JsonObject;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Credentials for trying secure agents out (the {@code certs init} command) and for tests: in one directory, a CA
 * ({@code ca.crt}, {@code ca.key}), per agent a certificate and key the CA signed ({@code NAME.crt},
 * {@code NAME.key}), and one token file per scope ({@code read.token}, {@code control.token}). Keys and tokens are
 * written mode 0600.
 *
 * @param dir where the files are
 * @param agents the agents with a certificate
 */
public record TrialCredentials(Path dir, List<String> agents) {

    /** Writes a new CA, a certificate per agent valid for {@code days}, and new tokens into {@code dir}. */
    public static TrialCredentials create(Path dir, List<String> agents, int days)
            throws IOException, GeneralSecurityException {
        Files.createDirectories(dir);
        CertificateAuthority ca = CertificateAuthority.create("vfio-migration-proxy trial CA", days);
        write(dir.resolve("ca.crt"), ca.identity().certificatePem(), false);
        write(dir.resolve("ca.key"), ca.identity().keyPem(), true);
        for (String agent : agents) {
            CertificateAuthority.Issued id = ca.issue(agent, days);
            write(dir.resolve(agent + ".crt"), id.certificatePem(), false);
            write(dir.resolve(agent + ".key"), id.keyPem(), true);
        }
        SecureRandom random = new SecureRandom();
        for (String scope : List.of("read", "control")) {
            byte[] token = new byte[32];
            random.nextBytes(token);
            write(dir.resolve(scope + ".token"), HexFormat.of().formatHex(token) + "\n", true);
        }
        TrialCredentials trial = new TrialCredentials(dir, List.copyOf(agents));
        // The same environments as files a shell can use: env $(cat DIR/node-a.env) java -jar ... agent
        for (String agent : agents) {
            StringBuilder lines = new StringBuilder();
            trial.environment(agent).forEach((k, v) -> lines.append(k).append('=').append(v).append('\n'));
            write(trial.environmentFile(agent), lines.toString(), false);
        }
        write(dir.resolve("client.env"), String.join("\n", trial.clientEnvironment()) + "\n", false);
        return trial;
    }

    /** {@code NAME.env}: the agent's environment, one VMP_...=... line each. */
    public Path environmentFile(String agent) {
        return dir.resolve(agent + ".env");
    }

    /**
     * Replaces {@code agent}'s key and certificate with new ones the same CA signs, valid from {@code notBefore}
     * to {@code notAfter}; each file is replaced at once (renamed into place), as a Secret's update replaces it.
     */
    public X509Certificate reissue(String agent, Instant notBefore, Instant notAfter)
            throws IOException, GeneralSecurityException {
        CertificateAuthority ca = CertificateAuthority.load(Files.readString(ca()),
                Files.readString(dir.resolve("ca.key")));
        CertificateAuthority.Issued id = ca.issue(agent, notBefore, notAfter);
        write(key(agent), id.keyPem(), true);
        write(certificate(agent), id.certificatePem(), false);
        return id.certificate();
    }

    private static void write(Path file, String text, boolean secret) throws IOException {
        Path next = file.resolveSibling(file.getFileName() + ".next");
        Files.writeString(next, text, StandardCharsets.US_ASCII);
        if (secret) {
            Files.setPosixFilePermissions(next, PosixFilePermissions.fromString("rw-------"));
        }
        Files.move(next, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    public Path certificate(String agent) {
        return dir.resolve(agent + ".crt");
    }

    public Path key(String agent) {
        return dir.resolve(agent + ".key");
    }

    public Path ca() {
        return dir.resolve("ca.crt");
    }

    public Path tokenFile(Scope scope) {
        return dir.resolve(scope.wireName() + ".token");
    }

    /** The token of {@code scope}, as a client sends it. */
    public String token(Scope scope) throws IOException {
        return Files.readString(tokenFile(scope)).strip();
    }

    /** The {@code security} section of {@code agent}'s configuration. */
    public JsonObject security(String agent) {
        return new JsonObject().put("insecure", false)
                .put("tls", new JsonObject().put("certPath", certificate(agent).toString())
                        .put("keyPath", key(agent).toString()).put("caPath", ca().toString()))
                .put("tokens", new JsonObject().put("read", tokenFile(Scope.READ).toString())
                        .put("control", tokenFile(Scope.CONTROL).toString()));
    }

    /** The environment that configures {@code agent} with these files: VMP_SECURITY_... variables. */
    public Map<String, String> environment(String agent) {
        Map<String, String> env = new LinkedHashMap<>();
        env.put("VMP_AGENT_NAME", agent);
        env.put("VMP_SECURITY_INSECURE", "false");
        env.put("VMP_SECURITY_TLS_CERT_PATH", certificate(agent).toString());
        env.put("VMP_SECURITY_TLS_KEY_PATH", key(agent).toString());
        env.put("VMP_SECURITY_TLS_CA_PATH", ca().toString());
        env.put("VMP_SECURITY_TOKENS_READ", tokenFile(Scope.READ).toString());
        env.put("VMP_SECURITY_TOKENS_CONTROL", tokenFile(Scope.CONTROL).toString());
        return env;
    }

    /** What a client of the API needs: the CA to trust and the token files. */
    public List<String> clientEnvironment() {
        List<String> lines = new ArrayList<>();
        lines.add("VMP_CA=" + ca());
        lines.add("VMP_TOKEN_FILE=" + tokenFile(Scope.CONTROL));
        return lines;
    }
}
