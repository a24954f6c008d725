package io.vfioproxy.device;

/**
 * {@code struct vfio_precopy_info}: what VFIO_MIG_GET_PRECOPY_INFO reports in PRE_COPY and PRE_COPY_P2P.
 *
 * @param initialBytes initial data still to read; should reach 0 before switching to STOP_COPY
 * @param dirtyBytes data the device dirtied since it was read
 */
public record PrecopyInfo(long initialBytes, long dirtyBytes) {
}
