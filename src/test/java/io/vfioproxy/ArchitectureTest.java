package io.vfioproxy;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static com.tngtech.archunit.library.Architectures.layeredArchitecture;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The packages and the one direction their dependencies point, over the compiled classes of src/main: a package
 * that imports one above it fails here.
 *
 * <pre>
 * cli
 * bench   chaos
 * agent
 * cluster
 * api
 * migration   relay   transport
 * security
 * device      stream
 * uapi
 * (vertx, the adapter over Vert.x internals, and util below everything: util depends on nothing of the project,
 * vertx on util only)
 * </pre>
 */
class ArchitectureTest {

    private static JavaClasses classes;

    @BeforeAll
    static void importMain() {
        classes = new ClassFileImporter().withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
                .importPackages("io.vfioproxy");
    }

    @Test
    void dependenciesPointDownOneWay() {
        layeredArchitecture().consideringOnlyDependenciesInLayers()
                .layer("cli").definedBy("io.vfioproxy.cli..")
                .layer("bench").definedBy("io.vfioproxy.bench..")
                .layer("chaos").definedBy("io.vfioproxy.chaos..")
                .layer("agent").definedBy("io.vfioproxy.agent..")
                .layer("cluster").definedBy("io.vfioproxy.cluster..")
                .layer("api").definedBy("io.vfioproxy.api..")
                .layer("migration").definedBy("io.vfioproxy.migration..")
                .layer("relay").definedBy("io.vfioproxy.relay..")
                .layer("transport").definedBy("io.vfioproxy.transport..")
                .layer("security").definedBy("io.vfioproxy.security..")
                .layer("device").definedBy("io.vfioproxy.device..")
                .layer("stream").definedBy("io.vfioproxy.stream..")
                .layer("uapi").definedBy("io.vfioproxy.uapi..")
                .layer("util").definedBy("io.vfioproxy.util..")
                .layer("vertx").definedBy("io.vfioproxy.vertx..")
                .whereLayer("cli").mayNotBeAccessedByAnyLayer()
                .whereLayer("chaos").mayOnlyAccessLayers("agent", "util")
                .whereLayer("bench").mayOnlyAccessLayers("agent", "api", "migration", "relay", "transport", "security",
                        "device", "stream", "uapi", "util", "vertx")
                .whereLayer("agent").mayOnlyAccessLayers("cluster", "api", "migration", "relay", "transport", "security", "device",
                        "stream", "uapi", "util", "vertx")
                .whereLayer("cluster").mayOnlyAccessLayers("api", "security", "util")
                .whereLayer("api").mayOnlyAccessLayers("migration", "relay", "security", "device", "stream", "uapi",
                        "util", "vertx")
                .whereLayer("relay").mayOnlyAccessLayers("stream", "util", "vertx")
                .whereLayer("migration").mayOnlyAccessLayers("device", "stream", "uapi", "util", "vertx")
                .whereLayer("transport").mayOnlyAccessLayers("stream", "security", "util", "vertx")
                .whereLayer("security").mayOnlyAccessLayers("util")
                .whereLayer("device").mayOnlyAccessLayers("uapi", "util")
                .whereLayer("stream").mayOnlyAccessLayers("uapi", "util", "vertx")
                .whereLayer("uapi").mayNotAccessAnyLayer()
                .whereLayer("util").mayNotAccessAnyLayer()
                .whereLayer("vertx").mayOnlyAccessLayers("util")
                .check(classes);
    }

    @Test
    void onlyTheAdapterUsesVertxInternals() {
        noClasses().that().resideOutsideOfPackage("io.vfioproxy.vertx..")
                .should().dependOnClassesThat().resideInAnyPackage("io.vertx.core.internal..", "io.vertx.core.impl..",
                        "io.vertx.core.net.impl..", "io.vertx.core.http.impl..")
                .because("Vert.x internals change between releases; VertxInternals is the one adapter over them")
                .check(classes);
    }
}
