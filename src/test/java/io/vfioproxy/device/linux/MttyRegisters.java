package io.vfioproxy.device.linux;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.NativeLong;
import com.sun.jna.Platform;

/**
 * The UART scratch register of mtty's port 0 (BAR0 offset 7), read and written through the VFIO region: a marker
 * that proves a device's state moved with its migration stream. Test-only.
 */
public final class MttyRegisters {

    /** VFIO_DEVICE_GET_REGION_INFO: _IO(';', 100 + 8); struct vfio_region_info is 32 bytes, offset at 24. */
    private static final int VFIO_DEVICE_GET_REGION_INFO = 0x3b6c;
    private static final int VFIO_PCI_BAR0_REGION_INDEX = 0;
    private static final int UART_SCR = 7;

    static {
        Native.register(MttyRegisters.class, Platform.C_LIBRARY_NAME);
    }

    private static native NativeLong pread(int fd, Memory buf, NativeLong count, long offset) throws LastErrorException;

    private static native NativeLong pwrite(int fd, Memory buf, NativeLong count, long offset) throws LastErrorException;

    private static native int ioctl(int fd, NativeLong request, Memory arg) throws LastErrorException;

    private MttyRegisters() {
    }

    private static long bar0(NativeDevice device) {
        Memory info = new Memory(32);
        info.clear();
        info.setInt(0, 32);
        info.setInt(8, VFIO_PCI_BAR0_REGION_INDEX);
        ioctl(device.fd(), new NativeLong(VFIO_DEVICE_GET_REGION_INFO), info);
        return info.getLong(24);
    }

    public static void writeScratch(NativeDevice device, int value) {
        Memory b = new Memory(1);
        b.setByte(0, (byte) value);
        pwrite(device.fd(), b, new NativeLong(1), bar0(device) + UART_SCR);
    }

    public static int readScratch(NativeDevice device) {
        Memory b = new Memory(1);
        pread(device.fd(), b, new NativeLong(1), bar0(device) + UART_SCR);
        return b.getByte(0) & 0xff;
    }
}
