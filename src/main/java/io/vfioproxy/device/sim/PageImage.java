package io.vfioproxy.device.sim;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * A simulated device's internal state: {@code pageCount} pages, each at a version. A page's content is a pure
 * function of (seed, page index, version): a slice of a 64 KiB pattern drawn from the seed, at an offset mixed from
 * the index and the version. So a 4 GiB state costs one int per page, and a receiver checks every byte it gets.
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

    PageImage(int pageSize, long seed, int[] versions) {
        this.pageSize = pageSize;
        this.seed = seed;
        this.pattern = pattern(seed, pageSize);
        this.versions = versions;
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
        versions[page]++;
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

    /** A digest of the whole state: equal digests mean equal states. */
    long digest() {
        return digest(seed, pageSize, versions);
    }

    static long digest(long seed, int pageSize, int[] versions) {
        long h = mix(seed ^ ((long) pageSize << 32) ^ versions.length);
        for (int i = 0; i < versions.length; i++) {
            h = mix(h + versions[i] * 0x9E3779B97F4A7C15L + i);
        }
        return h;
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
