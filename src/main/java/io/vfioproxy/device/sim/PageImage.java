package io.vfioproxy.device.sim;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * A simulated device's internal state: {@code pageCount} pages, each at a version. A page's content is a pure
 * function of (seed, page index, version): a slice of a 64 KiB pattern drawn from the seed, at an offset mixed from
 * the index and the version. So a 4 GiB state costs one int per page, and a receiver checks every byte it gets.
 *
 * <p>The digest is kept as pages change (a sum of one mixed term per page, updated by the page's change), so reading
 * it at the end of a stream costs nothing whatever the size: a real device's end of state does not scan its memory,
 * and a scan here (1 ms per GiB on each side) landed in the measured downtime and grew it with the state.
 *
 * <p>Not thread-safe: the device's lock guards it.
 */
final class PageImage {

    /** The span of the pattern page contents are cut from. */
    static final int PATTERN_SPAN = 1 << 16;

    private final int pageSize;
    private final long seed;
    private final byte[] pattern;
    private final int[] versions;
    /** The sum of {@link #term} over every page: updated with each change, never recomputed. */
    private long terms;

    /** An image holding {@code versions}, which it owns from here on (changed only through {@link #set}). */
    PageImage(int pageSize, long seed, int[] versions) {
        this.pageSize = pageSize;
        this.seed = seed;
        this.pattern = pattern(seed, pageSize);
        this.versions = versions;
        for (int i = 0; i < versions.length; i++) {
            terms += term(i, versions[i]);
        }
    }

    /** A fresh image: every page at version 1. */
    static PageImage fresh(int pageSize, int pageCount, long seed) {
        int[] versions = new int[pageCount];
        Arrays.fill(versions, 1);
        return new PageImage(pageSize, seed, versions);
    }

    int pageSize() {
        return pageSize;
    }

    int pageCount() {
        return versions.length;
    }

    long seed() {
        return seed;
    }

    int version(int page) {
        return versions[page];
    }

    /** The workload wrote {@code page}. */
    void write(int page) {
        set(page, versions[page] + 1);
    }

    /** {@code page} is at {@code version} now (a resuming stream loaded it). */
    void set(int page, int version) {
        terms += term(page, version) - term(page, versions[page]);
        versions[page] = version;
    }

    /** The page versions, for a state file. A copy. */
    int[] versions() {
        return versions.clone();
    }

    /** The bytes of {@code page} at {@code version} start at {@code pattern()[contentOffset(page, version)]}. */
    byte[] pattern() {
        return pattern;
    }

    int contentOffset(long page, long version) {
        return (int) (mix(seed ^ mix(page * 0x9E3779B97F4A7C15L + version)) >>> 48);
    }

    /**
     * A digest of the whole state: equal digests mean equal states. Each page's term is a bijective mix of its index
     * and version, so a page at another version always changes the sum; several changes cancel with a chance of
     * about 2^-64.
     */
    long digest() {
        return mix(mix(seed ^ ((long) pageSize << 32) ^ versions.length) + terms);
    }

    private static long term(int page, int version) {
        return mix(((long) page << 32 | (version & 0xFFFFFFFFL)) * 0x9E3779B97F4A7C15L);
    }

    private static byte[] pattern(long seed, int pageSize) {
        byte[] p = new byte[PATTERN_SPAN + pageSize];
        new SplittableRandom(seed).nextBytes(p);
        return p;
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }
}
