package io.vfioproxy.security;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.math.BigInteger;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.PKCS8EncodedKeySpec;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

/**
 * A small certificate authority for trying the agents out and for tests (the {@code certs} command): an EC P-256
 * CA, and per agent a key and a certificate the CA signs, for TLS server and client use, valid for its name,
 * {@code localhost} and 127.0.0.1. In production a cluster's own CA (cert-manager) issues them.
 *
 * <p>The JDK can verify X.509 certificates but not write them, and no library on the project's list does: the
 * DER encoding of the few fields needed (RFC 5280) is written here, and every certificate is read back and checked
 * with the JDK's own parser before it is returned.
 */
public final class CertificateAuthority {

    private static final String SIGNATURE = "SHA256withECDSA";
    // OIDs (RFC 5280, RFC 5480, RFC 5758)
    private static final String ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
    private static final String COMMON_NAME = "2.5.4.3";
    private static final String BASIC_CONSTRAINTS = "2.5.29.19";
    private static final String KEY_USAGE = "2.5.29.15";
    private static final String EXTENDED_KEY_USAGE = "2.5.29.37";
    private static final String SUBJECT_ALT_NAME = "2.5.29.17";
    private static final String SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
    private static final String CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

    private final KeyPair keys;
    private final X509Certificate certificate;
    private final SecureRandom random = new SecureRandom();

    private CertificateAuthority(KeyPair keys, X509Certificate certificate) {
        this.keys = keys;
        this.certificate = certificate;
    }

    /** An identity: a private key and its certificate. */
    public record Issued(PrivateKey key, X509Certificate certificate) {
        /** The key as PKCS#8 PEM ("PRIVATE KEY"), as Vert.x and Kubernetes TLS secrets hold it. */
        public String keyPem() {
            return pem("PRIVATE KEY", key.getEncoded());
        }

        public String certificatePem() {
            try {
                return pem("CERTIFICATE", certificate.getEncoded());
            } catch (GeneralSecurityException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    /** A new CA named {@code name}, valid from now for {@code days}. */
    public static CertificateAuthority create(String name, int days) throws GeneralSecurityException {
        KeyPair keys = newKeys();
        Instant now = Instant.now();
        CertificateAuthority ca = new CertificateAuthority(keys, null);
        X509Certificate cert = ca.sign(name, name, keys, now.minusSeconds(60), now.plusSeconds(86_400L * days),
                true, List.of());
        return new CertificateAuthority(keys, cert);
    }

    /** The CA whose certificate and PKCS#8 key are these PEM texts (as {@link #create} wrote them). */
    public static CertificateAuthority load(String certificatePem, String keyPem) throws GeneralSecurityException {
        X509Certificate cert = (X509Certificate) CertificateFactory.getInstance("X.509")
                .generateCertificate(new ByteArrayInputStream(certificatePem.getBytes(StandardCharsets.US_ASCII)));
        PrivateKey key = privateKey(keyPem, cert.getPublicKey().getAlgorithm());
        return new CertificateAuthority(new KeyPair(cert.getPublicKey(), key), cert);
    }

    public X509Certificate certificate() {
        return certificate;
    }

    public Issued identity() {
        return new Issued(keys.getPrivate(), certificate);
    }

    /** A key and certificate for agent {@code name}, valid from {@code notBefore} to {@code notAfter}. */
    public Issued issue(String name, Instant notBefore, Instant notAfter) throws GeneralSecurityException {
        KeyPair subject = newKeys();
        List<String> names = new ArrayList<>(List.of(name, "localhost"));
        X509Certificate cert = sign(certificate.getSubjectX500Principal().getName().replaceFirst("^CN=", ""), name,
                subject, notBefore, notAfter, false, names);
        return new Issued(subject.getPrivate(), cert);
    }

    /** A key and certificate for agent {@code name}, valid from now for {@code days}. */
    public Issued issue(String name, int days) throws GeneralSecurityException {
        Instant now = Instant.now();
        return issue(name, now.minusSeconds(60), now.plusSeconds(86_400L * days));
    }

    private static KeyPair newKeys() throws GeneralSecurityException {
        KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
        g.initialize(new ECGenParameterSpec("secp256r1"));
        return g.generateKeyPair();
    }

    private X509Certificate sign(String issuer, String subject, KeyPair subjectKeys, Instant notBefore,
            Instant notAfter, boolean isCa, List<String> dnsNames) throws GeneralSecurityException {
        List<byte[]> extensions = new ArrayList<>();
        extensions.add(extension(BASIC_CONSTRAINTS, true, isCa ? seq(bool(true)) : seq()));
        // keyUsage: keyCertSign and cRLSign for the CA; digitalSignature and keyEncipherment for an agent.
        extensions.add(extension(KEY_USAGE, true, isCa ? bitString(new byte[] {0x06}, 1)
                : bitString(new byte[] {(byte) 0xa0}, 5)));
        if (!isCa) {
            extensions.add(extension(EXTENDED_KEY_USAGE, false, seq(oid(SERVER_AUTH), oid(CLIENT_AUTH))));
            ByteArrayOutputStream san = new ByteArrayOutputStream();
            for (String dns : dnsNames) {
                san.writeBytes(tlv(0x82, dns.getBytes(StandardCharsets.US_ASCII)));
            }
            san.writeBytes(tlv(0x87, InetAddress.getLoopbackAddress().getAddress()));
            extensions.add(extension(SUBJECT_ALT_NAME, false, tlv(0x30, san.toByteArray())));
        }
        byte[] algorithm = seq(oid(ECDSA_WITH_SHA256));
        byte[] tbs = seq(
                tlv(0xa0, integer(BigInteger.TWO)),
                integer(new BigInteger(127, random).add(BigInteger.ONE)),
                algorithm,
                name(issuer),
                seq(time(notBefore), time(notAfter)),
                name(subject),
                subjectKeys.getPublic().getEncoded(),
                tlv(0xa3, seq(extensions.toArray(new byte[0][]))));
        Signature s = Signature.getInstance(SIGNATURE);
        s.initSign(isCa && certificate == null ? subjectKeys.getPrivate() : keys.getPrivate());
        s.update(tbs);
        byte[] der = seq(tbs, algorithm, bitString(s.sign(), 0));
        X509Certificate cert = (X509Certificate) CertificateFactory.getInstance("X.509")
                .generateCertificate(new ByteArrayInputStream(der));
        cert.verify(isCa && certificate == null ? subjectKeys.getPublic() : keys.getPublic());
        return cert;
    }

    // DER (X.690): tag, length, value.

    private static byte[] tlv(int tag, byte[] value) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(tag);
        int n = value.length;
        if (n < 0x80) {
            out.write(n);
        } else {
            byte[] len = BigInteger.valueOf(n).toByteArray();
            int skip = len[0] == 0 ? 1 : 0;
            out.write(0x80 | (len.length - skip));
            out.write(len, skip, len.length - skip);
        }
        out.writeBytes(value);
        return out.toByteArray();
    }

    private static byte[] seq(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.writeBytes(p);
        }
        return tlv(0x30, out.toByteArray());
    }

    private static byte[] integer(BigInteger v) {
        return tlv(0x02, v.toByteArray());
    }

    private static byte[] bool(boolean v) {
        return tlv(0x01, new byte[] {(byte) (v ? 0xff : 0)});
    }

    private static byte[] bitString(byte[] bits, int unused) {
        byte[] v = new byte[bits.length + 1];
        v[0] = (byte) unused;
        System.arraycopy(bits, 0, v, 1, bits.length);
        return tlv(0x03, v);
    }

    private static byte[] oid(String dotted) {
        String[] parts = dotted.split("\\.");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(Integer.parseInt(parts[0]) * 40 + Integer.parseInt(parts[1]));
        for (int i = 2; i < parts.length; i++) {
            long v = Long.parseLong(parts[i]);
            byte[] base128 = new byte[10];
            int n = 0;
            do {
                base128[n++] = (byte) (v & 0x7f);
                v >>>= 7;
            } while (v > 0);
            for (int j = n - 1; j >= 0; j--) {
                out.write(base128[j] | (j > 0 ? 0x80 : 0));
            }
        }
        return tlv(0x06, out.toByteArray());
    }

    /** A Name of one RDN: CN=value. */
    private static byte[] name(String commonName) {
        byte[] cn = seq(oid(COMMON_NAME), tlv(0x0c, commonName.getBytes(StandardCharsets.UTF_8)));
        return seq(tlv(0x31, cn));
    }

    /** UTCTime before 2050, GeneralizedTime from then (RFC 5280 4.1.2.5). */
    private static byte[] time(Instant t) {
        if (t.atZone(ZoneOffset.UTC).getYear() < 2050) {
            return tlv(0x17, DateTimeFormatter.ofPattern("yyMMddHHmmss'Z'").withZone(ZoneOffset.UTC).format(t)
                    .getBytes(StandardCharsets.US_ASCII));
        }
        return tlv(0x18, DateTimeFormatter.ofPattern("yyyyMMddHHmmss'Z'").withZone(ZoneOffset.UTC).format(t)
                .getBytes(StandardCharsets.US_ASCII));
    }

    private static byte[] extension(String id, boolean critical, byte[] value) {
        return critical ? seq(oid(id), bool(true), tlv(0x04, value)) : seq(oid(id), tlv(0x04, value));
    }

    /** The key of a PKCS#8 PEM text ("PRIVATE KEY", as {@link Issued#keyPem()} writes it), for {@code algorithm}. */
    static PrivateKey privateKey(String pkcs8Pem, String algorithm) throws GeneralSecurityException {
        String base64 = pkcs8Pem.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
        return KeyFactory.getInstance(algorithm)
                .generatePrivate(new PKCS8EncodedKeySpec(Base64.getDecoder().decode(base64)));
    }

    static String pem(String type, byte[] der) {
        return "-----BEGIN " + type + "-----\n" + Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII))
                .encodeToString(der) + "\n-----END " + type + "-----\n";
    }
}
