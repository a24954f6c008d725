package io.vfioproxy.agent;

import io.vertx.config.ConfigRetriever;
import io.vertx.config.ConfigRetrieverOptions;
import io.vertx.config.ConfigStoreOptions;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Loads an agent's configuration with vertx-config: the shipped defaults (conf/agent.json, carried in the jar), the
 * given file over them, and the environment over both.
 *
 * <p>An environment variable {@code VMP_<PATH>} sets the key its path names, at any depth, matched
 * case-insensitively with underscores between the words of the path: {@code VMP_STREAM_PORT=7071} sets
 * {@code stream.port}, {@code VMP_MIGRATION_PROGRESS_TIMEOUT_MILLIS=5000} sets {@code migration.progressTimeoutMillis},
 * {@code VMP_SECURITY_TLS_CERT_PATH=/tls/tls.crt} sets {@code security.tls.certPath}. The value takes the type the key
 * has (a number, a boolean, a JSON array or object, or a string); an array also takes a comma-separated list of
 * strings ({@code VMP_CLUSTER_MEMBERS=10.0.0.1:5701,10.0.0.2:5701}); {@code VMP_DEVICES} replaces the device list
 * with a JSON array. A variable that names no key, or more than one, is an error, so a typo does not go unnoticed.
 */
public final class AgentConfig {

    public static final String ENV_PREFIX = "VMP_";
    private static final String DEFAULTS = "/defaults/agent.json";

    private AgentConfig() {
    }

    /** The shipped defaults: conf/agent.json as the jar carries it. A fresh copy on every call. */
    public static JsonObject defaults() {
        try (InputStream in = AgentConfig.class.getResourceAsStream(DEFAULTS)) {
            if (in == null) {
                throw new IllegalStateException("the build carries no " + DEFAULTS + " (conf/agent.json)");
            }
            return new JsonObject(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Reads {@code path} over the defaults and applies the {@code VMP_*} variables of {@code env}.
     *
     * @return fails with a message that names the file or the variable at fault
     */
    public static Future<JsonObject> load(Vertx vertx, Path path, Map<String, String> env) {
        if (!Files.isRegularFile(path)) {
            return Future.failedFuture(new IllegalArgumentException("configuration file " + path + " does not exist"));
        }
        ConfigRetriever retriever = ConfigRetriever.create(vertx, new ConfigRetrieverOptions()
                .setIncludeDefaultStores(false)
                .setScanPeriod(0)
                .addStore(new ConfigStoreOptions().setType("json").setConfig(defaults()))
                .addStore(new ConfigStoreOptions().setType("file").setFormat("json")
                        .setConfig(new JsonObject().put("path", path.toString()))));
        retriever.setConfigurationProcessor(json -> applyEnvironment(json, env));
        return retriever.getConfig()
                .recover(e -> Future.failedFuture(e instanceof IllegalArgumentException ? e
                        : new IllegalArgumentException("configuration file " + path + " cannot be read: "
                                + e.getMessage(), e)))
                .eventually(retriever::close);
    }

    /** A key the environment sets: {@code key} of {@code parent}, at {@code path}. */
    private record Target(JsonObject parent, String key, String path) {
    }

    /**
     * Applies {@code VMP_*} variables of {@code env} to {@code config} (in place) and returns it.
     *
     * @throws IllegalArgumentException for a variable that names no configuration key, or several, or has a bad
     *         value
     */
    public static JsonObject applyEnvironment(JsonObject config, Map<String, String> env) {
        for (Map.Entry<String, String> e : new TreeMap<>(env).entrySet()) {
            String name = e.getKey();
            if (!name.startsWith(ENV_PREFIX)) {
                continue;
            }
            List<String> words = Arrays.asList(name.substring(ENV_PREFIX.length()).split("_", -1));
            List<Target> targets = targets(config, words, "");
            if (targets.isEmpty()) {
                throw new IllegalArgumentException(name + " names no configuration key: no "
                        + String.join(".", words).toLowerCase() + " (or a key of those words) in the configuration");
            }
            if (targets.size() > 1) {
                throw new IllegalArgumentException(name + " is ambiguous: it names "
                        + String.join(" and ", targets.stream().map(Target::path).toList()));
            }
            Target t = targets.get(0);
            t.parent().put(t.key(), convert(t.parent().getValue(t.key()), e.getValue(), name, t.path()));
        }
        return config;
    }

    /** Every key {@code words} can name below {@code json}: each key is one or more consecutive words. */
    private static List<Target> targets(JsonObject json, List<String> words, String prefix) {
        List<Target> found = new ArrayList<>();
        for (int n = 1; n <= words.size(); n++) {
            String wanted = String.join("", words.subList(0, n));
            for (String key : json.fieldNames()) {
                if (!key.replace("_", "").equalsIgnoreCase(wanted)) {
                    continue;
                }
                if (n == words.size()) {
                    found.add(new Target(json, key, prefix + key));
                } else if (json.getValue(key) instanceof JsonObject child) {
                    found.addAll(targets(child, words.subList(n, words.size()), prefix + key + "."));
                }
            }
        }
        return found;
    }

    private static Object convert(Object current, String text, String variable, String path) {
        try {
            if (current instanceof Boolean) {
                if (!text.equalsIgnoreCase("true") && !text.equalsIgnoreCase("false")) {
                    throw new IllegalArgumentException("not true or false");
                }
                return Boolean.parseBoolean(text);
            }
            if (current instanceof Integer) {
                return Integer.parseInt(text.trim());
            }
            if (current instanceof Long) {
                return Long.parseLong(text.trim());
            }
            if (current instanceof Number) {
                return Double.parseDouble(text.trim());
            }
            if (current instanceof JsonArray) {
                // A JSON array, or a comma-separated list of strings (VMP_CLUSTER_MEMBERS=a:5701,b:5701); the
                // device list, whose entries are objects, only as JSON.
                boolean ofObjects = path.equals("devices") || ((JsonArray) current).stream()
                        .anyMatch(JsonObject.class::isInstance);
                if (text.strip().startsWith("[") || ofObjects) {
                    return new JsonArray(text);
                }
                JsonArray list = new JsonArray();
                for (String item : text.split(",")) {
                    if (!item.isBlank()) {
                        list.add(item.strip());
                    }
                }
                return list;
            }
            if (current instanceof JsonObject) {
                return new JsonObject(text);
            }
            return text;
        } catch (IllegalArgumentException | DecodeException ex) {
            throw new IllegalArgumentException(variable + "='" + text + "' is not a valid " + kind(current)
                    + " for " + path);
        }
    }

    private static String kind(Object current) {
        if (current instanceof JsonArray) {
            return "JSON array";
        }
        if (current instanceof JsonObject) {
            return "JSON object";
        }
        return current instanceof Integer ? "integer" : current.getClass().getSimpleName().toLowerCase();
    }
}
