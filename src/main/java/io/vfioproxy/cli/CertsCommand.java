package io.vfioproxy.cli;

import io.vfioproxy.security.Scope;
import io.vfioproxy.security.TrialCredentials;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** Makes credentials for trying secure agents out: a CA, a certificate per agent, a token per scope. */
@Command(name = "certs", mixinStandardHelpOptions = true,
        description = "certs init --out DIR [--agents node-a,node-b]: write a CA (ca.crt, ca.key), a certificate and "
                + "key per agent the CA signed (NAME.crt, NAME.key), and one token file per scope (read.token, "
                + "control.token), then print for each agent the VMP_... variables that configure it (also written "
                + "to NAME.env, and the API clients' to client.env). For trials and tests; in a cluster, "
                + "cert-manager issues the certificates.")
public final class CertsCommand implements Callable<Integer> {

    @Parameters(index = "0", description = "init")
    String action;

    @Option(names = "--out", required = true, description = "the directory to write")
    Path out;

    @Option(names = "--agents", split = ",", defaultValue = "node-a,node-b",
            description = "the agents' names (${DEFAULT-VALUE})")
    List<String> agents;

    @Option(names = "--days", defaultValue = "365", description = "validity (${DEFAULT-VALUE})")
    int days;

    @Override
    public Integer call() throws Exception {
        if (!action.equals("init")) {
            System.err.println("certs: unknown action '" + action + "' (init)");
            return 2;
        }
        TrialCredentials trial = TrialCredentials.create(out.toAbsolutePath(), agents, days);
        System.out.println("# CA, agent certificates and tokens in " + trial.dir() + " (keys and tokens mode 0600)");
        for (String agent : agents) {
            System.out.println("# agent " + agent + " (also in " + trial.environmentFile(agent) + "):");
            for (Map.Entry<String, String> e : trial.environment(agent).entrySet()) {
                System.out.println(e.getKey() + "=" + e.getValue());
            }
        }
        System.out.println("# clients of the API (migrate, relay, status, watch, curl; also in "
                + trial.dir().resolve("client.env") + "):");
        trial.clientEnvironment().forEach(System.out::println);
        System.out.println("# read token: " + trial.tokenFile(Scope.READ) + ", control token: "
                + trial.tokenFile(Scope.CONTROL));
        return 0;
    }
}
