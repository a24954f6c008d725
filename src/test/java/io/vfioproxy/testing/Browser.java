package io.vfioproxy.testing;

import java.nio.file.Files;
import java.nio.file.Path;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;

/** Debian's headless Chromium driven through its own chromedriver: nothing is downloaded. */
public final class Browser {

    public static final Path CHROMIUM = Path.of("/usr/bin/chromium");
    public static final Path DRIVER = Path.of("/usr/bin/chromedriver");

    private Browser() {
    }

    /** Whether both are installed; if not, says so for {@code test}, which is then skipped. */
    public static boolean available(String test) {
        boolean present = Files.isExecutable(CHROMIUM) && Files.isExecutable(DRIVER);
        if (!present) {
            System.out.println(test + " skipped: " + CHROMIUM + " and " + DRIVER
                    + " are needed (Debian's chromium and chromium-driver; .ci/run installs them)");
        }
        return present;
    }

    /** A headless browser with its profile and the driver's log under {@code dir}. */
    public static WebDriver start(Path dir) {
        ChromeOptions options = new ChromeOptions().setBinary(CHROMIUM.toFile());
        // The trial CA is not the browser's: the certificate is checked by every other test.
        options.setAcceptInsecureCerts(true);
        options.addArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1100", "--user-data-dir=" + dir.resolve("chromium"));
        ChromeDriverService service = new ChromeDriverService.Builder().usingDriverExecutable(DRIVER.toFile())
                .withLogFile(dir.resolve("chromedriver.log").toFile()).build();
        return new ChromeDriver(service, options);
    }
}
