//! Scalar reference row kernels. They define the results every SIMD path must reproduce:
//! bit for bit for q8_0 / q4_0 (see [`super::reduce8`]), within rounding for f32 / f16.

use super::f16::f16_to_f32;
use super::{reduce8, QRow, QK};

/// Σ w·x, accumulated in 8 interleaved f32 lanes (same shape as the SIMD paths, not bit-identical).
pub(super) fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (wc, xc) in w.chunks_exact(8).zip(x.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += wc[l] * xc[l];
        }
    }
    let tail = w.len() / 8 * 8;
    let mut t = 0f32;
    for i in tail..w.len() {
        t += w[i] * x[i];
    }
    reduce8(acc) + t
}

pub(super) fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (wc, xc) in w.chunks_exact(8).zip(x.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += f16_to_f32(wc[l]) * xc[l];
        }
    }
    let tail = w.len() / 8 * 8;
    let mut t = 0f32;
    for i in tail..w.len() {
        t += f16_to_f32(w[i]) * x[i];
    }
    reduce8(acc) + t
}

/// The q8_0 · q8_0 row dot product, THE definition of the result:
/// group g's integer dot s_g (exact in i32) becomes `(s_g as f32) * (sw[g] * sx[g])`, which is added
/// to lane `g % 8`; the 8 lanes are then combined by [`reduce8`]. No fused multiply-add anywhere.
pub(super) fn dot_q8(qw: &[i8], sw: &[f32], x: &QRow) -> f32 {
    finish_lanes([0f32; 8], 0, sw, x.d, |g| group_q8(qw, x.qs, g))
}

/// q4_0 weights · q8_0 activations, same reduction order as [`dot_q8`].
pub(super) fn dot_q4(packed: &[u8], sw: &[f32], x: &QRow) -> f32 {
    finish_lanes([0f32; 8], 0, sw, x.d, |g| group_q4(packed, x.qs, g))
}

/// Finishes a float tile of the block kernels: adds each product's scalar tail (columns `from..cols`,
/// in order, as the single dot product does) to its vector sum and stores it at
/// `out[r * stride + t]` (rows `w` and inputs `x` consecutive, `cols` apart). Every SIMD path's tile
/// hands its reduced sums to this one function.
///
/// # Safety
/// `w` must hold R rows and `x` T inputs of `cols` values, and `out` must be valid for the writes.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
pub(super) unsafe fn finish_tile<const R: usize, const T: usize>(
    sums: [[f32; T]; R],
    (w, x, cols, from): (*const f32, *const f32, usize, usize),
    out: *mut f32,
    stride: usize,
) {
    for (r, sr) in sums.iter().enumerate() {
        for (t, &v) in sr.iter().enumerate() {
            let mut v = v;
            for j in from..cols {
                v += *w.add(r * cols + j) * *x.add(t * cols + j);
            }
            *out.add(r * stride + t) = v;
        }
    }
}

/// Adds groups `from..` to the 8 lane sums in the defining order (group g into lane `g % 8`), then
/// [`reduce8`]. Every SIMD path hands its vector lanes and its tail groups to this one function.
#[inline(always)]
pub(super) fn finish_lanes(
    mut lanes: [f32; 8],
    from: usize,
    sw: &[f32],
    sx: &[f32],
    group_dot: impl Fn(usize) -> i32,
) -> f32 {
    for g in from..sw.len() {
        lanes[g % 8] += group_dot(g) as f32 * (sw[g] * sx[g]);
    }
    reduce8(lanes)
}

/// Exact integer dot of q8_0 group `g` of a weight row with the activation row.
#[inline(always)]
pub(super) fn group_q8(qw: &[i8], qx: &[i8], g: usize) -> i32 {
    let r = g * QK..(g + 1) * QK;
    qw[r.clone()]
        .iter()
        .zip(&qx[r])
        .map(|(&a, &b)| a as i32 * b as i32)
        .sum()
}

/// Exact integer dot of q4_0 group `g` (byte j: element j low nibble, j+16 high nibble, stored q+8).
#[inline(always)]
pub(super) fn group_q4(packed: &[u8], qx: &[i8], g: usize) -> i32 {
    let (b, x) = (
        &packed[g * QK / 2..(g + 1) * QK / 2],
        &qx[g * QK..(g + 1) * QK],
    );
    (0..QK / 2)
        .map(|j| {
            ((b[j] & 0x0f) as i32 - 8) * x[j] as i32
                + ((b[j] >> 4) as i32 - 8) * x[j + QK / 2] as i32
        })
        .sum()
}
