package io.vfioproxy.api;

import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.buffer.Buffer;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.Json;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.RoutingContext;
import io.vertx.json.schema.Draft;
import io.vertx.json.schema.JsonSchema;
import io.vertx.json.schema.JsonSchemaOptions;
import io.vertx.json.schema.OutputFormat;
import io.vertx.json.schema.OutputUnit;
import io.vertx.json.schema.Validator;
import io.vertx.openapi.contract.OpenAPIContract;
import io.vertx.openapi.validation.RequestUtils;
import io.vertx.openapi.validation.RequestValidator;
import io.vertx.openapi.validation.SchemaValidationException;
import io.vertx.openapi.validation.ValidatorException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The API's OpenAPI document ({@code src/main/resources/openapi.json}) and the checks it defines, with vertx-openapi:
 * HTTP requests against their operation, event-bus command bodies against the same component schemas. A request the
 * document does not allow is refused with a message that points at the field.
 */
public final class ApiContract {

    /** JSON-schema keywords whose failure says what is wrong with a value (the rest only say "somewhere below"). */
    private static final Set<String> LEAF_KEYWORDS = Set.of("type", "enum", "minimum", "maximum", "minLength",
            "maxLength", "minItems", "maxItems", "required", "pattern", "format", "exclusiveMinimum",
            "exclusiveMaximum", "maxProperties", "minProperties", "uniqueItems");

    private final Buffer document;
    private final OpenAPIContract contract;
    private final RequestValidator requests;

    private ApiContract(Vertx vertx, Buffer document, OpenAPIContract contract) {
        this.document = document;
        this.contract = contract;
        this.requests = RequestValidator.create(vertx, contract);
    }

    /** Reads the document from the jar and builds its validators. */
    public static Future<ApiContract> load(Vertx vertx) {
        Buffer document;
        try (InputStream in = ApiContract.class.getResourceAsStream("/openapi.json")) {
            if (in == null) {
                return Future.failedFuture(new IllegalStateException("the OpenAPI document is missing from the build"));
            }
            document = Buffer.buffer(in.readAllBytes());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return OpenAPIContract.from(vertx, document.toJsonObject()).map(c -> new ApiContract(vertx, document, c));
    }

    /** The document as served at /v1/openapi.json. */
    public Buffer document() {
        return document;
    }

    /**
     * Checks a request whose body a BodyHandler already read against {@code operationId}.
     *
     * @return the body, or a failed future with {@link Invalid}
     */
    public Future<JsonObject> validate(RoutingContext rc, String operationId) {
        Buffer body = rc.body().buffer();
        try {
            if (body == null || !(Json.decodeValue(body) instanceof JsonObject)) {
                throw new DecodeException("not an object");
            }
        } catch (DecodeException e) {
            return Future.failedFuture(new Invalid("the request body must be a JSON object"));
        }
        return RequestUtils.extract(rc.request(), contract.operation(operationId),
                        () -> Future.succeededFuture(body == null ? Buffer.buffer() : body))
                .compose(request -> requests.validate(request, operationId))
                .transform(ar -> {
                    if (ar.succeeded()) {
                        return Future.succeededFuture(body.toJsonObject());
                    }
                    return Future.failedFuture(ar.cause() instanceof ValidatorException e ? invalid(e)
                            : ar.cause());
                });
    }

    /**
     * Checks {@code body} against the component schema {@code schema} ("MigrationRequest").
     *
     * @throws Invalid where it does not conform
     */
    public void validate(String schema, JsonObject body) {
        Validator validator = contract.getSchemaRepository().validator(
                JsonSchema.of(new JsonObject().put("$ref", "app:///#/components/schemas/" + schema)),
                new JsonSchemaOptions().setDraft(Draft.DRAFT4).setBaseUri("app:///")
                        .setOutputFormat(OutputFormat.Basic));
        OutputUnit result = validator.validate(body);
        if (!result.getValid()) {
            throw new Invalid("invalid " + schema + ": " + describe(result));
        }
    }

    /** A request the document does not allow; the message says which field and why. */
    public static final class Invalid extends IllegalArgumentException {
        Invalid(String message) {
            super(message);
        }
    }

    private static Invalid invalid(ValidatorException e) {
        if (e instanceof SchemaValidationException s && s.getOutputUnit() != null) {
            return new Invalid("invalid request: " + describe(s.getOutputUnit()));
        }
        return new Invalid("invalid request: " + e.getMessage());
    }

    /** The failures that say what is wrong, each at its place in the body: "/destination: Instance type ...". */
    static String describe(OutputUnit result) {
        List<OutputUnit> errors = result.getErrors() == null ? List.of(result) : result.getErrors();
        List<String> why = new ArrayList<>();
        Set<String> explained = new java.util.HashSet<>();
        for (OutputUnit u : errors) {
            if (LEAF_KEYWORDS.contains(lastSegment(u.getKeywordLocation()))) {
                why.add(place(u) + ": " + u.getError());
                explained.add(u.getInstanceLocation());
            }
        }
        for (OutputUnit u : errors) {
            if ("additionalProperties".equals(lastSegment(u.getKeywordLocation()))
                    && !explained.contains(u.getInstanceLocation())) {
                why.add(place(u) + ": no such property");
                explained.add(u.getInstanceLocation());
            }
        }
        return why.isEmpty() ? String.valueOf(result.getError()) : String.join("; ", why);
    }

    private static String place(OutputUnit u) {
        String at = u.getInstanceLocation() == null ? "#" : u.getInstanceLocation();
        return at.equals("#") ? "the body" : at.substring(1);
    }

    private static String lastSegment(String location) {
        return location == null ? "" : location.substring(location.lastIndexOf('/') + 1);
    }
}
