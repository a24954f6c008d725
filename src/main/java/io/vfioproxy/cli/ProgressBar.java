package io.vfioproxy.cli;

import io.vfioproxy.util.ByteSize;
import java.io.PrintStream;
import java.util.Locale;

/** A one-line progress bar redrawn in place: {@code [#########-----------]  45%  460 MiB / 1.00 GiB  0.85 GB/s}. */
final class ProgressBar {

    private static final int WIDTH = 30;

    private final PrintStream out;
    private final long startNanos = System.nanoTime();
    private int lastLength;

    ProgressBar(PrintStream out) {
        this.out = out;
    }

    void update(String phase, long done, long total) {
        double fraction = total > 0 ? Math.min(1.0, (double) done / total) : 0;
        int filled = (int) Math.round(fraction * WIDTH);
        double seconds = (System.nanoTime() - startNanos) / 1e9;
        String line = String.format(Locale.ROOT, "[%s%s] %3.0f%%  %s / %s  %.2f GB/s  %s",
                "#".repeat(filled), "-".repeat(WIDTH - filled), fraction * 100, ByteSize.format(done),
                ByteSize.format(total), seconds > 0 ? done / seconds / 1e9 : 0.0, phase);
        String pad = line.length() < lastLength ? " ".repeat(lastLength - line.length()) : "";
        lastLength = line.length();
        out.print("\r" + line + pad);
        out.flush();
    }

    void finish() {
        out.println();
        out.flush();
    }
}
