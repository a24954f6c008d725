package io.vfioproxy.cli;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.UpgradeRejectedException;
import io.vertx.core.http.WebSocket;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.http.WebSocketClientOptions;
import io.vertx.core.http.WebSocketConnectOptions;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonObject;
import io.vertx.core.net.PemTrustOptions;
import io.vertx.ext.web.client.HttpRequest;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import io.vertx.ext.web.client.WebClientOptions;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/**
 * The commands' way to a running agent's API ({@code --agent}): HTTP requests and WebSocket feeds, in a Vert.x of
 * their own. Open it in a try-with-resources; it waits for nothing of the agent on close.
 */
final class AgentClient implements AutoCloseable {

    @Option(names = "--agent", defaultValue = "${env:VMP_AGENT:-https://localhost:8080}",
            description = "the agent's API (${DEFAULT-VALUE}; VMP_AGENT)")
    URI agent;

    @Option(names = "--token-file", defaultValue = "${env:VMP_TOKEN_FILE}",
            description = "a file holding the bearer token (read, or control to act; VMP_TOKEN_FILE)")
    Path tokenFile;

    @Option(names = "--ca", defaultValue = "${env:VMP_CA}",
            description = "the CA that signs the agents' certificates, to trust the agent's HTTPS (VMP_CA)")
    Path ca;

    private Vertx vertx;
    private WebClient http;
    private WebSocketClient ws;
    private String token;

    /** Connects the clients; call once the options are parsed. */
    AgentClient open() {
        vertx = Vertx.vertx();
        boolean tls = "https".equals(agent.getScheme());
        WebClientOptions httpOptions = new WebClientOptions().setSsl(tls);
        WebSocketClientOptions wsOptions = new WebSocketClientOptions().setSsl(tls);
        if (tls && ca != null) {
            // The CA admits the agent: its certificate names the node, not the address it is reached by.
            httpOptions.setTrustOptions(new PemTrustOptions().addCertPath(ca.toString())).setVerifyHost(false);
            wsOptions.setTrustOptions(new PemTrustOptions().addCertPath(ca.toString())).setVerifyHost(false);
        }
        http = WebClient.create(vertx, httpOptions);
        ws = vertx.createWebSocketClient(wsOptions);
        if (tokenFile != null) {
            try {
                token = Files.readString(tokenFile).lines().map(String::strip)
                        .filter(l -> !l.isEmpty() && !l.startsWith("#")).findFirst().orElse(null);
            } catch (IOException e) {
                throw new IllegalArgumentException("token file " + tokenFile + " cannot be read: " + e.getMessage());
            }
        }
        return this;
    }

    private <T> HttpRequest<T> authorized(HttpRequest<T> request) {
        return token == null ? request : request.bearerTokenAuthentication(token);
    }

    URI agent() {
        return agent;
    }

    String url(String path) {
        return agent.resolve(path).toString();
    }

    HttpResponse<Buffer> get(String path) {
        return authorized(http.getAbs(url(path))).send().await();
    }

    /** The JSON the agent answers a GET of {@code path} with; {@link Refused} unless it answered 2xx. */
    JsonObject getJson(String path) {
        HttpResponse<Buffer> response = get(path);
        if (response.statusCode() / 100 != 2) {
            throw new Refused(response.statusCode(), "GET " + path + ": " + response.statusCode() + " "
                    + error(response));
        }
        return response.bodyAsJsonObject();
    }

    /** The agent answered, with an error. */
    static final class Refused extends RuntimeException {
        Refused(int status, String message) {
            super(message);
        }
    }

    /** What went wrong in words for the user: the agent's refusal (401, 403, ...) or why it could not be reached. */
    String problem(RuntimeException e) {
        if (e instanceof Refused) {
            return "the agent at " + agent + " answered " + e.getMessage();
        }
        if (e instanceof UpgradeRejectedException rejected) {
            return "the agent at " + agent + " refused the feed: " + rejected.getStatus()
                    + (rejected.getStatus() == 401 ? " (a read token is needed: --token-file or VMP_TOKEN_FILE)" : "");
        }
        return "cannot reach the agent at " + agent + ": " + e.getMessage();
    }

    HttpResponse<Buffer> post(String path, JsonObject body) {
        return authorized(http.postAbs(url(path))).sendJsonObject(body).await();
    }

    /** Opens the WebSocket feed at {@code path}; {@code setup} sets its handlers before any message is delivered. */
    WebSocket webSocket(String path, java.util.function.Consumer<WebSocket> setup) {
        boolean tls = "https".equals(agent.getScheme());
        int port = agent.getPort() < 0 ? (tls ? 443 : 80) : agent.getPort();
        WebSocketConnectOptions options = new WebSocketConnectOptions().setHost(agent.getHost()).setPort(port)
                .setURI(path).setSsl(tls);
        if (token != null) {
            options.addHeader("Authorization", "Bearer " + token);
        }
        return ws.connect(options).onSuccess(setup::accept).await();
    }

    /** The message of the API's error shape, or the whole body. */
    static String error(HttpResponse<Buffer> response) {
        try {
            JsonObject body = response.bodyAsJsonObject();
            return body == null ? "(no body)" : body.getJsonObject("error", new JsonObject())
                    .getString("message", body.encode());
        } catch (DecodeException | ClassCastException notTheErrorShape) {
            return response.bodyAsString();
        }
    }

    @Override
    public void close() {
        if (vertx != null) {
            http.close();
            ws.close();
            vertx.close().await();
        }
    }
}
