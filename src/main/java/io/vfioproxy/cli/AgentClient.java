package io.vfioproxy.cli;

import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.http.WebSocket;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.client.HttpResponse;
import io.vertx.ext.web.client.WebClient;
import java.net.URI;
import picocli.CommandLine.Option;

/**
 * The commands' way to a running agent's API ({@code --agent}): HTTP requests and WebSocket feeds, in a Vert.x of
 * their own. Open it in a try-with-resources; it waits for nothing of the agent on close.
 */
final class AgentClient implements AutoCloseable {

    @Option(names = "--agent", defaultValue = "http://localhost:8080", description = "the agent's API (${DEFAULT-VALUE})")
    URI agent;

    private Vertx vertx;
    private WebClient http;
    private WebSocketClient ws;

    /** Connects the clients; call once the options are parsed. */
    AgentClient open() {
        vertx = Vertx.vertx();
        http = WebClient.create(vertx);
        ws = vertx.createWebSocketClient();
        return this;
    }

    URI agent() {
        return agent;
    }

    String url(String path) {
        return agent.resolve(path).toString();
    }

    HttpResponse<Buffer> get(String path) {
        return http.getAbs(url(path)).send().await();
    }

    JsonObject getJson(String path) {
        return get(path).bodyAsJsonObject();
    }

    HttpResponse<Buffer> post(String path, JsonObject body) {
        return http.postAbs(url(path)).sendJsonObject(body).await();
    }

    /** Opens the WebSocket feed at {@code path}; {@code setup} sets its handlers before any message is delivered. */
    WebSocket webSocket(String path, java.util.function.Consumer<WebSocket> setup) {
        int port = agent.getPort() < 0 ? 80 : agent.getPort();
        return ws.connect(port, agent.getHost(), path).onSuccess(setup::accept).await();
    }

    /** The message of the API's error shape, or the whole body. */
    static String error(HttpResponse<Buffer> response) {
        JsonObject body = response.bodyAsJsonObject();
        return body.getJsonObject("error", new JsonObject()).getString("message", body.encode());
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
