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
    let (qx, sx) = (x.qs, x.d);
    let mut acc = [0f32; 8];
    for (g, (w, x)) in qw.chunks_exact(QK).zip(qx.chunks_exact(QK)).enumerate() {
        let s: i32 = w.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum();
        acc[g % 8] += s as f32 * (sw[g] * sx[g]);
    }
    reduce8(acc)
}

/// q4_0 weights · q8_0 activations, same reduction order as [`dot_q8`].
pub(super) fn dot_q4(packed: &[u8], sw: &[f32], x: &QRow) -> f32 {
    let (qx, sx) = (x.qs, x.d);
    let mut acc = [0f32; 8];
    for (g, (b, x)) in packed
        .chunks_exact(QK / 2)
        .zip(qx.chunks_exact(QK))
        .enumerate()
    {
        let mut s = 0i32;
        for j in 0..QK / 2 {
            s += ((b[j] & 0x0f) as i32 - 8) * x[j] as i32;
            s += ((b[j] >> 4) as i32 - 8) * x[j + QK / 2] as i32;
        }
        acc[g % 8] += s as f32 * (sw[g] * sx[g]);
    }
    reduce8(acc)
}
