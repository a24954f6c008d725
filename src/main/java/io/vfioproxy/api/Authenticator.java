package io.vfioproxy.api;

import io.netty.handler.codec.http.QueryStringDecoder;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.sockjs.SockJSSocket;
import io.vfioproxy.security.Credentials;
import io.vfioproxy.security.Refusals;
import io.vfioproxy.security.Scope;
import java.util.List;

/**
 * Lets a request through only with a bearer token of the scope it needs: GET (devices, migrations, relays, the
 * feeds, the bridge, metrics) needs {@code read}, anything else {@code control}. The token comes in
 * {@code Authorization: Bearer ...}, or, for a browser's WebSocket, which cannot set that header, in an
 * {@code access_token} query parameter. 401 without a known token, 403 with a token of too small a scope; each
 * refusal logged once per peer and reason. With security off, everything passes.
 */
final class Authenticator {

    private final String agent;
    private final Credentials credentials;
    private final Refusals refusals;

    Authenticator(String agent, Credentials credentials, Refusals refusals) {
        this.agent = agent;
        this.credentials = credentials;
        this.refusals = refusals;
    }

    /** The token of {@code request}, or null. */
    static String token(HttpServerRequest request) {
        String bearer = bearer(request.getHeader("Authorization"));
        return bearer != null ? bearer : request.getParam("access_token");
    }

    /** The token in an {@code Authorization: Bearer ...} header, or null. */
    private static String bearer(String header) {
        return header != null && header.regionMatches(true, 0, "Bearer ", 0, 7) ? header.substring(7).strip() : null;
    }

    /** The scope of a SockJS connection's token (its first request's header or access_token parameter), or null. */
    Scope scope(SockJSSocket socket) {
        if (!credentials.secure()) {
            return Scope.CONTROL;
        }
        String token = bearer(socket.headers().get("Authorization"));
        if (token == null) {
            List<String> values = new QueryStringDecoder(socket.uri()).parameters().get("access_token");
            token = values == null || values.isEmpty() ? null : values.get(0);
        }
        return credentials.tokens().scope(token);
    }

    void handle(RoutingContext rc) {
        if (!credentials.secure()) {
            rc.next();
            return;
        }
        HttpServerRequest request = rc.request();
        Scope needed = request.method() == HttpMethod.GET || request.method() == HttpMethod.HEAD ? Scope.READ
                : Scope.CONTROL;
        String token = token(request);
        Scope has = credentials.tokens().scope(token);
        String peer = request.remoteAddress() == null ? "?" : request.remoteAddress().hostAddress();
        if (has == null) {
            String why = token == null ? "no bearer token" : "a token agent " + agent + " does not know";
            refusals.refused(request.method() + " " + request.path(), peer, why);
            rc.response().putHeader("WWW-Authenticate", "Bearer realm=\"vfio-migration-proxy\"");
            fail(rc, 401, "agent " + agent + " needs a bearer token (Authorization: Bearer <token>): " + why);
            return;
        }
        if (!has.allows(needed)) {
            refusals.refused(request.method() + " " + request.path(), peer, "a " + has.wireName() + " token");
            fail(rc, 403, request.method() + " " + request.path() + " needs a " + needed.wireName() + " token; this "
                    + "one is a " + has.wireName() + " token");
            return;
        }
        rc.next();
    }

    private static void fail(RoutingContext rc, int status, String message) {
        rc.response().setStatusCode(status).putHeader("Content-Type", "application/json")
                .end(new JsonObject().put("error", new JsonObject().put("status", status).put("message", message))
                        .encode());
    }
}
