package io.vfioproxy.util;

import java.util.function.Predicate;

/** Finds an enum constant by what it stands for on the wire (a code, a tag, a name). */
public final class Enums {

    private Enums() {
    }

    /** The first of {@code values} that {@code matches}, or null. */
    public static <E extends Enum<E>> E find(E[] values, Predicate<E> matches) {
        for (E e : values) {
            if (matches.test(e)) {
                return e;
            }
        }
        return null;
    }
}
