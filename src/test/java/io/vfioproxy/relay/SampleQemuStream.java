package io.vfioproxy.relay;

/** A small but whole QEMU savevm stream (RAM pages, a VFIO device, EOF), for tests outside this package. */
public final class SampleQemuStream {

    private SampleQemuStream() {
    }

    /** The stream of {@link QemuStreamObserverTest#stream()}: RAM in two passes, a VFIO device, EOF. */
    public static byte[] bytes() {
        return QemuStreamObserverTest.stream();
    }
}
