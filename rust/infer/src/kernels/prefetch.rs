//! Software prefetch of the weight stream. Decode reads every weight once per token, and the
//! hardware prefetcher alone does not keep enough requests in flight for one core to approach the
//! copy bandwidth (the kernels stall on loads; docs/performance.md). Asking for the bytes a few KiB
//! ahead of the row being multiplied does. Prefetches never fault, so addresses past the end of a
//! matrix are harmless (they are formed with `wrapping_add`, never dereferenced).

/// How far ahead of the current row the weight bytes are requested: far enough to cover the memory
/// latency at one core's bandwidth, near enough to stay within L2 (docs/performance.md).
pub(super) const AHEAD_BYTES: usize = 4096;
const LINE: usize = 64;

/// Requests the cache lines covering `len` bytes at `p + AHEAD_BYTES`.
#[inline(always)]
pub(super) fn ahead<T>(p: *const T, len: usize) {
    let p = (p as *const u8).wrapping_add(AHEAD_BYTES);
    let mut off = 0;
    while off < len {
        line(p.wrapping_add(off));
        off += LINE;
    }
}

#[inline(always)]
fn line(p: *const u8) {
    // Into L2 (T1), not L1: at the limit the L1 fill buffers are full and the prefetches themselves
    // stall; L2 tracks more outstanding misses.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint with no architectural effect; SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p as *const i8)
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: PRFM is a hint: it never faults and changes no architectural state.
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}
