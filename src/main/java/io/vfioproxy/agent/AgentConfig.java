package io.vfioproxy.agent;

import io.vertx.config.ConfigRetriever;
import io.vertx.config.ConfigRetrieverOptions;
import io.vertx.config.ConfigStoreOptions;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;

/**
 * Loads an agent's configuration: a JSON file (conf/agent.json) with environment overrides on top.
 *
 * <p>An environment variable {@code VMP_<SECTION>_<KEY>} sets {@code <section>.<key>} of the file, matched
 * case-insensitively, with the type the file gives it: {@code VMP_STREAM_PORT=7071}, {@code VMP_AGENT_NAME=node-b},
 * {@code VMP_MIGRATION_CHUNKSIZE=2097152}. {@code VMP_DEVICES} replaces the device list with a JSON array.
 * A variable that names no key of the file is an error, so a typo does not go unnoticed.
 */
public final class AgentConfig {

    public static final String ENV_PREFIX = "VMP_";

    private AgentConfig() {
    }

    /** Reads {@code path} and applies the process environment. */
    public static Future<JsonObject> load(Vertx vertx, Path path) {
        if (!Files.isRegularFile(path)) {
            return Future.failedFuture(new IllegalArgumentException("configuration file " + path + " does not exist"));
        }
        ConfigRetriever retriever = ConfigRetriever.create(vertx, new ConfigRetrieverOptions()
                .setIncludeDefaultStores(false)
                .setScanPeriod(0)
                .addStore(new ConfigStoreOptions().setType("file").setFormat("json")
                        .setConfig(new JsonObject().put("path", path.toString()))));
        return retriever.getConfig()
                .map(json -> applyEnvironment(json, System.getenv()))
                .eventually(retriever::close);
    }

    /**
     * Applies {@code VMP_*} variables of {@code env} to {@code config} (in place) and returns it.
     *
     * @throws IllegalArgumentException for a variable that names no configuration key or has a bad value
     */
    public static JsonObject applyEnvironment(JsonObject config, Map<String, String> env) {
        for (Map.Entry<String, String> e : new TreeMap<>(env).entrySet()) {
            String name = e.getKey();
            if (!name.startsWith(ENV_PREFIX)) {
                continue;
            }
            String rest = name.substring(ENV_PREFIX.length());
            if (rest.equals("DEVICES")) {
                try {
                    config.put("devices", new JsonArray(e.getValue()));
                } catch (DecodeException ex) {
                    throw new IllegalArgumentException(name + " must be a JSON array of devices: " + ex.getMessage());
                }
                continue;
            }
            int cut = rest.indexOf('_');
            if (cut <= 0) {
                throw new IllegalArgumentException(name + " names no configuration key (expected VMP_SECTION_KEY)");
            }
            JsonObject section = config.getJsonObject(match(config, rest.substring(0, cut), name));
            String key = match(section, rest.substring(cut + 1).replace("_", ""), name);
            section.put(key, convert(section.getValue(key), e.getValue(), name));
        }
        return config;
    }

    private static String match(JsonObject json, String wanted, String variable) {
        if (json != null) {
            for (String key : json.fieldNames()) {
                if (key.equalsIgnoreCase(wanted)) {
                    return key;
                }
            }
        }
        throw new IllegalArgumentException(variable + " names no configuration key: no '" + wanted.toLowerCase()
                + "' in the configuration file");
    }

    private static Object convert(Object current, String text, String variable) {
        try {
            if (current instanceof Boolean) {
                if (!text.equalsIgnoreCase("true") && !text.equalsIgnoreCase("false")) {
                    throw new IllegalArgumentException();
                }
                return Boolean.parseBoolean(text);
            }
            if (current instanceof Integer) {
                return Integer.parseInt(text.trim());
            }
            if (current instanceof Number) {
                return Long.parseLong(text.trim());
            }
            return text;
        } catch (IllegalArgumentException ex) {
            throw new IllegalArgumentException(variable + "='" + text + "' is not a valid "
                    + current.getClass().getSimpleName().toLowerCase());
        }
    }
}
