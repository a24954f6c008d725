package io.vfioproxy.testing;

import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.util.LinkedHashMap;
import java.util.List;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.Tuple;

/** Random JSON for property tests: any value where a field is expected, and objects built from a set of keys. */
public final class JsonTrees {

    private JsonTrees() {
    }

    /** Scalars of every JSON type, with the edge cases parsers trip on. */
    public static Arbitrary<Object> scalars() {
        return Arbitraries.oneOf(
                Arbitraries.just(null),
                Arbitraries.of(true, false),
                Arbitraries.integers().map(Object.class::cast),
                Arbitraries.longs().map(Object.class::cast),
                Arbitraries.of(-1, 0, 1, Integer.MAX_VALUE, Integer.MIN_VALUE).map(Object.class::cast),
                Arbitraries.of(Long.MAX_VALUE, Long.MIN_VALUE, -1L).map(Object.class::cast),
                Arbitraries.doubles().map(Object.class::cast),
                Arbitraries.of(Double.NaN, 1e308, -0.0).map(Object.class::cast),
                Arbitraries.strings().ofMaxLength(40).map(Object.class::cast),
                Arbitraries.strings().withChars('a', 'z').ofMinLength(1000).ofMaxLength(20_000)
                        .map(Object.class::cast),
                Arbitraries.of("", " ", "gpu0", "127.0.0.1:1", "ws://x", "precopy", "stop-copy", "manual", "auto",
                        "../../etc/passwd", "\u0000", "1GiB", "-1").map(Object.class::cast));
    }

    /** Any JSON value, nested up to {@code depth}. */
    public static Arbitrary<Object> values(int depth) {
        if (depth == 0) {
            return scalars();
        }
        Arbitrary<Object> inner = Arbitraries.lazy(() -> values(depth - 1));
        return Arbitraries.frequencyOf(
                Tuple.of(6, scalars()),
                Tuple.of(1, inner.list().ofMaxSize(4).map(l -> (Object) new JsonArray(l))),
                Tuple.of(1, Arbitraries.maps(Arbitraries.strings().ofMaxLength(8), inner).ofMaxSize(4)
                        .map(m -> (Object) new JsonObject(new LinkedHashMap<>(m)))));
    }

    /**
     * Objects whose fields are drawn from {@code keys}, each present or not, with a value from {@code valid}
     * (the same key's well-formed value) or any JSON value.
     */
    public static Arbitrary<JsonObject> objects(List<String> keys, JsonObject valid) {
        List<Arbitrary<Object>> fields = keys.stream().map(k -> Arbitraries.frequencyOf(
                Tuple.of(3, Arbitraries.just(valid.getValue(k))),
                Tuple.of(2, values(3)),
                Tuple.of(1, Arbitraries.just((Object) Absent.ABSENT)))).toList();
        return Combinators.combine(fields).as(vs -> {
            JsonObject o = new JsonObject();
            for (int i = 0; i < keys.size(); i++) {
                if (vs.get(i) != Absent.ABSENT) {
                    o.put(keys.get(i), vs.get(i));
                }
            }
            return o;
        });
    }

    private enum Absent { ABSENT }
}
