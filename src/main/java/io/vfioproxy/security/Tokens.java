package io.vfioproxy.security;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;

/**
 * The bearer tokens an agent accepts, each with its scope; read from files, one token a line ('#' starts a
 * comment), so several can be valid at once while they rotate. Immutable: a reload makes a new one.
 */
public final class Tokens {

    /** Shorter than this is no secret. */
    static final int MIN_LENGTH = 16;

    private record Entry(byte[] token, Scope scope) {
    }

    private final List<Entry> entries;

    private Tokens(List<Entry> entries) {
        this.entries = List.copyOf(entries);
    }

    /**
     * Parses the contents of the read and control token files.
     *
     * @throws IllegalArgumentException naming the file where a token is too short or a file holds none
     */
    public static Tokens parse(String readFile, String read, String controlFile, String control) {
        List<Entry> entries = new ArrayList<>();
        add(entries, readFile, read, Scope.READ);
        add(entries, controlFile, control, Scope.CONTROL);
        return new Tokens(entries);
    }

    private static void add(List<Entry> entries, String file, String text, Scope scope) {
        int found = 0;
        for (String line : text.split("\n")) {
            String t = line.strip();
            if (t.isEmpty() || t.startsWith("#")) {
                continue;
            }
            if (t.length() < MIN_LENGTH) {
                throw new IllegalArgumentException("token file " + file + " holds a token of " + t.length()
                        + " characters: at least " + MIN_LENGTH + " are needed");
            }
            entries.add(new Entry(t.getBytes(StandardCharsets.UTF_8), scope));
            found++;
        }
        if (found == 0) {
            throw new IllegalArgumentException("token file " + file + " holds no " + scope.wireName() + " token");
        }
    }

    /** The scope of {@code token}, or null for a token this agent does not know. Compares in constant time. */
    public Scope scope(String token) {
        if (token == null) {
            return null;
        }
        byte[] given = token.getBytes(StandardCharsets.UTF_8);
        Scope found = null;
        for (Entry e : entries) {
            if (MessageDigest.isEqual(e.token, given) && (found == null || e.scope == Scope.CONTROL)) {
                found = e.scope;
            }
        }
        return found;
    }
}
