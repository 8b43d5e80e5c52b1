//! x86-64 kernels, one file per instruction set: [`avx2`] (AVX2 + FMA + F16C) and [`avx512`]
//! (AVX-512 with VNNI for the integer dots; it also uses AVX2 instructions).
//!
//! The q8_0 / q4_0 kernels reproduce [`super::scalar::dot_q8`] bit for bit: each group's integer dot
//! is summed exactly in i32, converted to f32, multiplied by `sw * sx`, and added to lane `g % 8` of an
//! 8-lane f32 accumulator (one `__m256` holds lanes 0..8 for groups 8i..8i+8), then
//! [`super::reduce8`]. The float kernels use FMA and their own summation order (within 1e-5 relative
//! of scalar). The helpers here are shared by both files.

mod avx2;
mod avx512;

pub(super) use avx2::avx2;
pub(super) use avx512::avx512vnni;

use std::arch::x86_64::*;

use super::scalar::finish_lanes;

/// Exact group dots of 8 groups from unsigned-offset weights: Σ (w + off)·x − off·Σx.
#[inline(always)]
unsafe fn remove_offset<const SHIFT: i32>(s: __m256i, sums: *const i32) -> __m256i {
    let xs = _mm256_loadu_si256(sums as *const __m256i);
    _mm256_sub_epi32(s, _mm256_slli_epi32::<SHIFT>(xs))
}

/// Adds the 8 group sums `s` (groups g0..g0+8) into the lane accumulator, as the scalar kernel does.
#[inline(always)]
unsafe fn accumulate8(acc: __m256, s: __m256i, sw: *const f32, sx: *const f32) -> __m256 {
    let d = _mm256_mul_ps(_mm256_loadu_ps(sw), _mm256_loadu_ps(sx));
    _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(s), d))
}

/// Stores the 8-lane accumulator and finishes the tail groups `from..` by the scalar definition.
#[inline(always)]
unsafe fn finish(
    acc: __m256,
    from: usize,
    tail: impl Fn(usize) -> i32,
    sw: &[f32],
    sx: &[f32],
) -> f32 {
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
    finish_lanes(lanes, from, sw, sx, tail)
}

/// Requests group g's weights ([`super::prefetch::AHEAD_BYTES`] ahead) and scales, with one input
/// (decode: see [`super::Panels::prefetch_one`]).
#[inline(always)]
unsafe fn prefetch_group<const T: usize, const GROUP_BYTES: usize>(
    w: *const u8,
    sw: *const f32,
    g: usize,
) {
    if T == 1 {
        super::prefetch::ahead(w.add(g * GROUP_BYTES), GROUP_BYTES);
        super::prefetch::ahead(sw.add(g * 16), 64);
    }
}
