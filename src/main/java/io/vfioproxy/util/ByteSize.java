package io.vfioproxy.util;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Parses and prints byte counts: "1GiB", "256MiB", "4096", "1.5GB". */
public final class ByteSize {

    private static final Pattern SIZE = Pattern.compile("\\s*(\\d+(?:\\.\\d+)?)\\s*([KMGT]i?B?|B)?\\s*",
            Pattern.CASE_INSENSITIVE);

    private ByteSize() {
    }

    /**
     * Parses a size. Binary units (KiB, MiB, GiB, TiB, or K, M, G, T) are powers of 1024; decimal units (KB, MB,
     * GB, TB) are powers of 1000.
     *
     * @throws IllegalArgumentException with the offending text
     */
    public static long parse(String text) {
        Matcher m = SIZE.matcher(text);
        if (!m.matches()) {
            throw new IllegalArgumentException("'" + text + "' is not a size (examples: 4096, 256MiB, 1GiB)");
        }
        double number = Double.parseDouble(m.group(1));
        String unit = m.group(2) == null ? "" : m.group(2).toUpperCase(Locale.ROOT);
        long factor;
        if (unit.isEmpty() || unit.equals("B")) {
            factor = 1;
        } else {
            int power = "KMGT".indexOf(unit.charAt(0)) + 1;
            boolean decimal = unit.length() == 2 && unit.charAt(1) == 'B';
            factor = 1;
            for (int i = 0; i < power; i++) {
                factor *= decimal ? 1000 : 1024;
            }
        }
        double bytes = number * factor;
        if (bytes > Long.MAX_VALUE) {
            throw new IllegalArgumentException("size '" + text + "' is too large");
        }
        return (long) bytes;
    }

    /** "1.00 GiB", "512.0 MiB", "96 B". */
    public static String format(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return u == 0 ? bytes + " B" : String.format(Locale.ROOT, v >= 100 ? "%.0f %s" : "%.2f %s", v, units[u]);
    }
}
