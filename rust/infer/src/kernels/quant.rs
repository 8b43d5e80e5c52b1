//! Block quantization (q8_0, q4_0) of weights and activations, and row dequantization.
//!
//! Both formats use groups of [`QK`] = 32 consecutive values within a row, one f32 scale per group.
//! Rounding is `f32::round` (half away from zero) of `value / scale`, a division, so that the exporter,
//! the engine and every ISA path quantize the same way.

use super::f16::f16_to_f32;
use super::{panel, Kernels, MatRef, Weights, QK};

fn check_shape(len: usize, cols: usize) {
    assert!(
        cols > 0 && cols.is_multiple_of(QK),
        "quantization needs cols to be a positive multiple of {QK}, got {cols}"
    );
    assert!(
        len.is_multiple_of(cols),
        "{len} values are not whole rows of {cols}"
    );
}

/// Symmetric 8-bit: scale = max|v| / 127, q = round(v / scale) in -127..=127.
pub fn quantize_q8_0(w: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    check_shape(w.len(), cols);
    let mut qs = vec![0i8; w.len()];
    let mut scales = vec![0f32; w.len() / QK];
    quantize_q8_0_into(w, &mut qs, &mut scales);
    (qs, scales)
}

/// q8_0 of `v` into caller-provided buffers (used for activations, once per matmul input), on the
/// fastest path (every path quantizes to the same values).
pub(crate) fn quantize_q8_0_into(v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
    Kernels::best().quantize_q8_0(v, qs, scales)
}

/// The scalar definition, whatever the CPU (tests compare the vector path with it).
#[cfg(test)]
pub(crate) fn quantize_q8_0_scalar(v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
    quantize_q8_0_groups(v, qs, scales)
}

/// The definition: the plain-source path, and the reference of the vector ones.
#[inline(always)]
pub(crate) fn quantize_q8_0_groups(v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
    for ((group, q), scale) in v
        .chunks_exact(QK)
        .zip(qs.chunks_exact_mut(QK))
        .zip(scales.iter_mut())
    {
        // Max over 8 lanes, then across them: max is exact in any order, and the lanes let the
        // compiler vectorize (an ordered fold stays scalar). `if a > m` ignores NaN like f32::max.
        let mut lanes = [0f32; 8];
        for c in group.chunks_exact(8) {
            for (m, &x) in lanes.iter_mut().zip(c) {
                let a = x.abs();
                if a > *m {
                    *m = a;
                }
            }
        }
        let amax = lanes.iter().fold(0f32, |m, &a| if a > m { a } else { m });
        let d = amax / 127.0;
        *scale = d;
        if d == 0.0 {
            q.fill(0);
            continue;
        }
        for (qi, &x) in q.iter_mut().zip(group) {
            *qi = round_to_q8(x / d);
        }
    }
}

/// `v.round().clamp(-127, 127)` (half away from zero) for |v| ≤ 128 or NaN (→ 0), written with a
/// truncating conversion instead of a `roundf` call so that the compiler vectorizes it: activations
/// are quantized before every matmul. `v - trunc(v)` is exact at these magnitudes, so the result is
/// the same as `f32::round`'s.
#[inline(always)]
fn round_to_q8(v: f32) -> i8 {
    let t = v as i32;
    let frac = v - t as f32;
    let r = t + (frac >= 0.5) as i32 - (frac <= -0.5) as i32;
    r.clamp(-127, 127) as i8
}

/// 4-bit: scale = (signed value with the largest magnitude, first one on ties) / -8,
/// q = clamp(round(v / scale), -8, 7), stored as q + 8; byte j of a group holds element j (low nibble)
/// and element j + 16 (high nibble).
pub fn quantize_q4_0(w: &[f32], cols: usize) -> (Vec<u8>, Vec<f32>) {
    check_shape(w.len(), cols);
    let mut packed = vec![0u8; w.len() / 2];
    let mut scales = vec![0f32; w.len() / QK];
    for ((group, bytes), scale) in w
        .chunks_exact(QK)
        .zip(packed.chunks_exact_mut(QK / 2))
        .zip(scales.iter_mut())
    {
        let mut max = 0f32;
        for &x in group {
            if x.abs() > max.abs() {
                max = x;
            }
        }
        let d = max / -8.0;
        *scale = d;
        let q = |x: f32| -> u8 {
            if d == 0.0 {
                8
            } else {
                ((x / d).round().clamp(-8.0, 7.0) as i32 + 8) as u8
            }
        };
        for j in 0..QK / 2 {
            bytes[j] = q(group[j]) | (q(group[j + QK / 2]) << 4);
        }
    }
    (packed, scales)
}

/// Row `row` of `m` as f32 values (`out.len() == m.cols`); quantized values are `q * scale`.
pub fn dequantize_row(m: &MatRef, row: usize, out: &mut [f32]) {
    assert!(row < m.rows, "row {row} out of range for {} rows", m.rows);
    assert_eq!(out.len(), m.cols, "output length must equal cols");
    let (start, end) = (row * m.cols, (row + 1) * m.cols);
    let groups = m.cols / QK;
    match &m.w {
        Weights::F32(w) => out.copy_from_slice(&w[start..end]),
        Weights::F16(w) => {
            for (o, &h) in out.iter_mut().zip(&w[start..end]) {
                *o = f16_to_f32(h);
            }
        }
        Weights::Q8_0 { qs, scales } => {
            let sc = &scales[row * groups..(row + 1) * groups];
            for ((o, q), &d) in out
                .chunks_exact_mut(QK)
                .zip(qs[start..end].chunks_exact(QK))
                .zip(sc)
            {
                for (oi, &qi) in o.iter_mut().zip(q) {
                    *oi = qi as f32 * d;
                }
            }
        }
        Weights::Q4_0 { packed, scales } => {
            let sc = &scales[row * groups..(row + 1) * groups];
            for ((o, b), &d) in out
                .chunks_exact_mut(QK)
                .zip(packed[start / 2..end / 2].chunks_exact(QK / 2))
                .zip(sc)
            {
                for j in 0..QK / 2 {
                    o[j] = ((b[j] & 0x0f) as i32 - 8) as f32 * d;
                    o[j + QK / 2] = ((b[j] >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        Weights::Q8_0Panels { qs, scales } => {
            for (c, o) in out.iter_mut().enumerate() {
                let d = scales[panel::scale_index(groups, row, c / QK)];
                *o = panel::q8_value(qs, m.cols, row, c) as f32 * d;
            }
        }
        Weights::Q4_0Panels { packed, scales } => {
            for (c, o) in out.iter_mut().enumerate() {
                let d = scales[panel::scale_index(groups, row, c / QK)];
                *o = panel::q4_value(packed, m.cols, row, c) as f32 * d;
            }
        }
    }
}
