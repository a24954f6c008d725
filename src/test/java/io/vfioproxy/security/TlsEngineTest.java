package io.vfioproxy.security;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.vertx.core.net.OpenSSLEngineOptions;
import java.util.Locale;
import org.junit.jupiter.api.Test;

class TlsEngineTest {

    @Test
    void onTheNodesPlatformsTheBoringSslEngineLoads() {
        String os = System.getProperty("os.name").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch");
        assumeTrue(os.contains("linux") && (arch.equals("amd64") || arch.equals("aarch64")),
                "the agent ships BoringSSL for linux-x86_64 and linux-aarch_64 only, this is " + os + "/" + arch);
        assertThat(TlsMaterial.engine()).isInstanceOf(OpenSSLEngineOptions.class);
        assertThat(TlsMaterial.engineName()).startsWith("OpenSSL (BoringSSL");
    }
}
