package io.vfioproxy.api;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.PemTrustOptions;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vertx.ext.web.client.WebClientOptions;
import io.vfioproxy.agent.AgentVerticle;
import io.vfioproxy.agent.LoopbackAgent;
import io.vfioproxy.security.Scope;
import io.vfioproxy.security.TrialCredentials;
import io.vfioproxy.testing.Browser;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.openqa.selenium.By;
import org.openqa.selenium.OutputType;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.support.ui.WebDriverWait;

/**
 * The operators' page in a real browser (Debian's headless Chromium through its chromedriver, nothing downloaded)
 * against a secure agent: a control token watches a migration, switches it over from the page and sees it complete
 * at 100% with its downtime; a failed migration shows its reason; a read token sees everything and no button.
 */
class OperatorsPageIT {

    private static final long MIB = 1 << 20;
    /** Generous: a browser starting on a busy 2-core machine, and a migration after it. */
    private static final Duration WAIT = Duration.ofSeconds(90);

    @TempDir
    Path dir;
    private Vertx vertx;
    private TrialCredentials trial;
    private AgentVerticle source;
    private AgentVerticle destination;
    private WebClient api;
    private WebDriver browser;

    @BeforeEach
    void start() throws Exception {
        assumeTrue(Browser.available("OperatorsPageIT"), "Debian's chromium and chromium-driver are not installed");
        vertx = Vertx.vertx();
        trial = TrialCredentials.create(dir.resolve("certs"), List.of("src", "dst"), 1);
        destination = LoopbackAgent.named("dst").secure(trial).withoutApi()
                .device(LoopbackAgent.simulated("gpu0", 64 * MIB, 1))
                .device(LoopbackAgent.simulated("nic1", 16 * MIB, 2)).start(vertx);
        source = LoopbackAgent.named("src").secure(trial)
                .device(LoopbackAgent.simulated("gpu0", 64 * MIB, 3))
                .device(LoopbackAgent.simulated("nic0", 16 * MIB, 4))
                .device(LoopbackAgent.simulated("nic1", 16 * MIB, 5)).start(vertx);
        api = WebClient.create(vertx, new WebClientOptions().setDefaultHost("127.0.0.1")
                .setDefaultPort(source.apiPort()).setSsl(true).setVerifyHost(false)
                .setTrustOptions(new PemTrustOptions().addCertPath(trial.ca().toString())));
        browser = Browser.start(dir);
    }

    @AfterEach
    void stop() {
        if (browser != null) {
            browser.quit();
        }
        if (vertx != null) {
            vertx.close().await();
        }
    }

    private String url() {
        return "https://127.0.0.1:" + source.apiPort() + "/";
    }

    private String startMigration(JsonObject body) throws Exception {
        HttpResponse<Buffer> r = api.post("/v1/migrations").bearerTokenAuthentication(trial.token(Scope.CONTROL))
                .sendJsonObject(body).await();
        assertThat(r.statusCode()).as(r.bodyAsString()).isEqualTo(201);
        return r.bodyAsJsonObject().getString("id");
    }

    private WebDriverWait waiting() {
        return new WebDriverWait(browser, WAIT, Duration.ofMillis(100));
    }

    private void logIn(String token) {
        browser.get(url());
        waiting().until(b -> b.findElement(By.id("login")).isDisplayed());
        browser.findElement(By.id("token")).sendKeys(token);
        browser.findElement(By.id("login-button")).click();
        waiting().until(b -> b.findElement(By.id("view")).isDisplayed());
        waiting().until(b -> b.findElement(By.id("feed")).getText().equals("feed: live"));
    }

    /** The text of {@code column} (1-based) in the row of migration {@code id} of agent src. */
    private String cell(String id, int column) {
        return migrationRow(id).findElement(By.cssSelector("td:nth-child(" + column + ")")).getText();
    }

    private WebElement migrationRow(String id) {
        return browser.findElement(By.cssSelector("#migrations tr[data-migration='src/" + id + "']"));
    }

    private String percent(String id) {
        return migrationRow(id).findElement(By.cssSelector(".bar")).getAttribute("data-percent");
    }

    @Test
    void aControlTokenWatchesAndSwitchesOverAMigrationAndAReadTokenOnlyWatches() throws Exception {
        logIn(trial.token(Scope.CONTROL));
        assertThat(browser.findElement(By.id("agent")).getText()).isEqualTo("agent src");
        assertThat(browser.findElement(By.id("scope")).getText()).isEqualTo("control token");
        waiting().until(b -> b.findElement(By.cssSelector("#devices tr[data-device='src/gpu0'] td:nth-child(3)"))
                .getText().equals("RUNNING"));

        // A migration that waits for its switchover: the page shows it under way, with its buttons.
        String id = startMigration(new JsonObject().put("device", "gpu0").put("switchover", "manual")
                .put("destination", "127.0.0.1:" + destination.streamPort()));
        waiting().until(b -> cell(id, 6).equals("READY_FOR_SWITCHOVER"));
        assertThat(Integer.parseInt(percent(id))).as("progress while pre-copy ran").isBetween(1, 99);
        assertThat(cell(id, 11)).isEqualTo("active");
        Path shot = ((ChromeDriver) browser).getScreenshotAs(OutputType.FILE).toPath();
        Path kept = Path.of("target", "operators-page.png");
        Files.copy(shot, kept, StandardCopyOption.REPLACE_EXISTING);
        System.out.println("OperatorsPageIT: a screenshot of the page during a migration is in " + kept);

        migrationRow(id).findElement(By.cssSelector("button.switchover")).click();
        waiting().until(b -> cell(id, 11).equals("completed"));
        assertThat(percent(id)).isEqualTo("100");
        assertThat(cell(id, 9)).as("downtime").matches("[0-9]+(\\.[0-9])? ms");
        assertThat(cell(id, 10)).as("switchover reason").isNotBlank();
        assertThat(migrationRow(id).findElements(By.tagName("button"))).as("no buttons once it ended").isEmpty();
        waiting().until(b -> b.findElement(By.cssSelector("#devices tr[data-device='src/gpu0'] td:nth-child(3)"))
                .getText().equals("STOP"));
        assertThat(browser.findElement(By.id("chart")).isDisplayed()).isTrue();

        // A migration that fails: its reason in its row and in the failures.
        String failed = startMigration(new JsonObject().put("device", "nic0").put("destination", "127.0.0.1:1"));
        waiting().until(b -> cell(failed, 11).startsWith("failed: "));
        String reason = cell(failed, 11).substring("failed: ".length());
        assertThat(reason).isNotBlank();
        waiting().until(b -> b.findElements(By.cssSelector("#failures li")).stream()
                .anyMatch(li -> li.getText().contains(failed) && li.getText().contains(reason)));

        // A read token: the same view, no control button, also for a migration that waits for its switchover.
        browser.findElement(By.id("logout")).click();
        logIn(trial.token(Scope.READ));
        assertThat(browser.findElement(By.id("scope")).getText()).isEqualTo("read token");
        String waiting = startMigration(new JsonObject().put("device", "nic1").put("switchover", "manual")
                .put("destination", "127.0.0.1:" + destination.streamPort()));
        waiting().until(b -> cell(waiting, 6).equals("READY_FOR_SWITCHOVER"));
        assertThat(cell(id, 11)).isEqualTo("completed");
        assertThat(browser.findElements(By.cssSelector("button.cancel, button.switchover"))).isEmpty();
        assertThat(browser.findElements(By.tagName("button"))).filteredOn(WebElement::isDisplayed)
                .extracting(WebElement::getText).containsExactly("forget token");
        HttpResponse<Buffer> cancelled = api.post("/v1/migrations/" + waiting + "/cancel")
                .bearerTokenAuthentication(trial.token(Scope.CONTROL)).send().await();
        assertThat(cancelled.statusCode()).isEqualTo(202);
        waiting().until(b -> cell(waiting, 11).startsWith("cancelled"));
    }

    @Test
    void theWrongTokenIsRefusedOnThePageAndThePageShowsNothingWithoutOne() throws Exception {
        browser.get(url());
        waiting().until(b -> b.findElement(By.id("login")).isDisplayed());
        assertThat(browser.findElement(By.id("view")).isDisplayed()).isFalse();
        browser.findElement(By.id("token")).sendKeys("not-a-token-of-this-agent");
        browser.findElement(By.id("login-button")).click();
        waiting().until(b -> b.findElement(By.id("login-error")).getText().contains("does not know"));
        assertThat(browser.findElement(By.id("view")).isDisplayed()).isFalse();

        // The files themselves are public and hold no data; they are served with a policy that keeps the page to
        // its own files and this agent.
        HttpResponse<Buffer> page = api.get("/").send().await();
        assertThat(page.statusCode()).isEqualTo(200);
        assertThat(page.getHeader("Content-Type")).startsWith("text/html");
        assertThat(page.getHeader("Content-Security-Policy")).contains("default-src 'none'")
                .contains("connect-src 'self'");
        assertThat(api.get("/ui/app.js").send().await().getHeader("Content-Type")).contains("javascript");
        assertThat(api.get("/ui/nothing-here.js").send().await().statusCode()).isEqualTo(401);
        assertThat(api.get("/v1/session").send().await().statusCode()).isEqualTo(401);
        JsonObject session = api.get("/v1/session").bearerTokenAuthentication(trial.token(Scope.READ)).send()
                .await().bodyAsJsonObject();
        assertThat(session.getString("scope")).isEqualTo("read");
        assertThat(session.getBoolean("secure")).isTrue();
        assertThat(new File(dir.toFile(), "chromedriver.log")).exists();
    }
}
