//! Block quantization (q8_0, q4_0) of weights and activations, and row dequantization.
//!
//! Both formats use groups of [`QK`] = 32 consecutive values within a row, one f32 scale per group.
//! Rounding is `f32::round` (half away from zero) of `value / scale`, a division, so that the exporter,
//! the engine and every ISA path quantize the same way.

use super::f16::f16_to_f32;
use super::{panel, MatRef, Weights, QK};

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

/// q8_0 of `v` into caller-provided buffers (used for activations, once per matmul input).
pub(crate) fn quantize_q8_0_into(v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected just above.
        return unsafe { quantize_q8_0_avx512(v, qs, scales) };
    }
    quantize_q8_0_groups(v, qs, scales)
}

/// [`quantize_q8_0_groups`] with AVX-512, one group (two vectors) at a time. Only exact operations
/// (max, division, truncation, integer adds), so the values are identical to the scalar code's:
/// NaN is ignored by the maximum (`max_ps` returns its second operand when the first is NaN) and
/// quantizes to 0, as `round_to_q8` does.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_q8_0_avx512(v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
    use std::arch::x86_64::*;
    let groups = scales.len().min(v.len() / QK).min(qs.len() / QK);
    let (pv, pq) = (v.as_ptr(), qs.as_mut_ptr());
    // (Clearing the sign bit with an integer AND: `_mm512_andnot_ps` needs AVX-512DQ, and without
    // it enabled here was called out of line for every vector.)
    let abs = |x: __m512| {
        _mm512_castsi512_ps(_mm512_and_si512(
            _mm512_castps_si512(x),
            _mm512_set1_epi32(0x7fff_ffff),
        ))
    };
    let (one, half) = (_mm512_set1_epi32(1), _mm512_set1_ps(0.5));
    for (g, scale) in scales.iter_mut().enumerate().take(groups) {
        let x = [
            _mm512_loadu_ps(pv.add(g * QK)),
            _mm512_loadu_ps(pv.add(g * QK + 16)),
        ];
        let m = _mm512_max_ps(abs(x[1]), _mm512_max_ps(abs(x[0]), _mm512_setzero_ps()));
        let d = _mm512_reduce_max_ps(m) / 127.0;
        *scale = d;
        let out = pq.add(g * QK) as *mut __m128i;
        if d == 0.0 {
            _mm_storeu_si128(out, _mm_setzero_si128());
            _mm_storeu_si128(out.add(1), _mm_setzero_si128());
            continue;
        }
        let dv = _mm512_set1_ps(d);
        for (k, &xk) in x.iter().enumerate() {
            let q = _mm512_div_ps(xk, dv);
            // Truncate (NaN lanes: 0), then step away from zero when the fraction is at least 1/2.
            let t = _mm512_maskz_cvttps_epi32(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(q, q), q);
            let frac = _mm512_sub_ps(q, _mm512_cvtepi32_ps(t));
            let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, half);
            let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(frac, _mm512_set1_ps(-0.5));
            let r = _mm512_mask_sub_epi32(_mm512_mask_add_epi32(t, up, t, one), down, t, one);
            let r = _mm512_max_epi32(
                _mm512_min_epi32(r, _mm512_set1_epi32(127)),
                _mm512_set1_epi32(-127),
            );
            _mm_storeu_si128(out.add(k), _mm512_cvtepi32_epi8(r));
        }
    }
}

/// The scalar definition, whatever the CPU (tests compare the vector path with it).
#[cfg(test)]
pub(crate) fn quantize_q8_0_scalar(v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
    quantize_q8_0_groups(v, qs, scales)
}

#[inline(always)]
fn quantize_q8_0_groups(v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
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
