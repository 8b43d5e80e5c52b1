//! wasm32 simd128 row kernels (compiled in when the build enables `+simd128`; wasm has no run-time
//! feature detection). q8_0 / q4_0 follow the reduction order of [`super::scalar::dot_q8`] bit for bit.

use std::arch::wasm32::*;

use super::scalar::{finish_lanes, group_q4, group_q8};
use super::{Kernels, QRow, QK};

pub(super) fn simd128() -> Option<Kernels> {
    Some(Kernels {
        name: "simd128",
        dot_f32,
        dot_f16,
        dot_q8: |qw, sw, x| {
            dot_groups(
                sw.len(),
                |g| load_q8(&qw[g * QK..]),
                x,
                sw,
                |g| group_q8(qw, x.qs, g),
            )
        },
        dot_q4: |p, sw, x| {
            dot_groups(
                sw.len(),
                |g| load_q4(&p[g * QK / 2..]),
                x,
                sw,
                |g| group_q4(p, x.qs, g),
            )
        },
    })
}

#[inline(always)]
fn load(s: &[i8]) -> v128 {
    assert!(s.len() >= 16);
    // SAFETY: at least 16 readable bytes (checked above); v128_load has no alignment requirement.
    unsafe { v128_load(s.as_ptr() as *const v128) }
}

#[inline(always)]
fn load_q8(s: &[i8]) -> [v128; 2] {
    [load(s), load(&s[16..])]
}

/// 32 q4_0 values (16 packed bytes) as i8 in -8..=7: low nibbles are elements 0..16, high 16..32.
#[inline(always)]
fn load_q4(p: &[u8]) -> [v128; 2] {
    assert!(p.len() >= 16);
    // SAFETY: 16 readable bytes.
    let b = unsafe { v128_load(p.as_ptr() as *const v128) };
    let eight = i8x16_splat(8);
    [
        i8x16_sub(v128_and(b, u8x16_splat(0x0f)), eight),
        i8x16_sub(u8x16_shr(b, 4), eight),
    ]
}

/// One group's i8·i8 products as 4 i32 partial sums (exact).
#[inline(always)]
fn group_dot(w: [v128; 2], x: [v128; 2]) -> v128 {
    let mut acc = i32x4_splat(0);
    for h in 0..2 {
        acc = i32x4_add(
            acc,
            i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(w[h], x[h])),
        );
        acc = i32x4_add(
            acc,
            i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(w[h], x[h])),
        );
    }
    acc
}

/// Exact sums of 4 vectors: lane j = Σ lanes of v[j].
#[inline(always)]
fn hsum4x4(v: [v128; 4]) -> v128 {
    let a = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]),
        i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]),
    );
    let b = i32x4_add(
        i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]),
        i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]),
    );
    i32x4_add(
        i32x4_shuffle::<0, 1, 4, 5>(a, b),
        i32x4_shuffle::<2, 3, 6, 7>(a, b),
    )
}

#[inline(always)]
fn f32s(s: &[f32]) -> v128 {
    f32x4(s[0], s[1], s[2], s[3])
}

#[inline(always)]
fn dot_groups(
    groups: usize,
    load_w: impl Fn(usize) -> [v128; 2],
    x: &QRow,
    sw: &[f32],
    tail: impl Fn(usize) -> i32,
) -> f32 {
    let (sx, qx) = (x.d, x.qs);
    let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut g = 0;
    while g + 8 <= groups {
        let mut v = [i32x4_splat(0); 8];
        for (j, vj) in v.iter_mut().enumerate() {
            *vj = group_dot(load_w(g + j), load_q8(&qx[(g + j) * QK..]));
        }
        let s_lo = f32x4_convert_i32x4(hsum4x4([v[0], v[1], v[2], v[3]]));
        let s_hi = f32x4_convert_i32x4(hsum4x4([v[4], v[5], v[6], v[7]]));
        let d_lo = f32x4_mul(f32s(&sw[g..]), f32s(&sx[g..]));
        let d_hi = f32x4_mul(f32s(&sw[g + 4..]), f32s(&sx[g + 4..]));
        lo = f32x4_add(lo, f32x4_mul(s_lo, d_lo));
        hi = f32x4_add(hi, f32x4_mul(s_hi, d_hi));
        g += 8;
    }
    let lanes = [
        f32x4_extract_lane::<0>(lo),
        f32x4_extract_lane::<1>(lo),
        f32x4_extract_lane::<2>(lo),
        f32x4_extract_lane::<3>(lo),
        f32x4_extract_lane::<0>(hi),
        f32x4_extract_lane::<1>(hi),
        f32x4_extract_lane::<2>(hi),
        f32x4_extract_lane::<3>(hi),
    ];
    finish_lanes(lanes, g, sw, sx, tail)
}

fn hsum_f32(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

/// f32 dot with 4 independent accumulators (wasm has no fused multiply-add).
fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len();
    let mut a = [f32x4_splat(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, ak) in a.iter_mut().enumerate() {
            let o = i + 4 * k;
            *ak = f32x4_add(*ak, f32x4_mul(f32s(&w[o..]), f32s(&x[o..])));
        }
        i += 16;
    }
    let mut t = hsum_f32(f32x4_add(f32x4_add(a[0], a[1]), f32x4_add(a[2], a[3])));
    for j in i..n {
        t += w[j] * x[j];
    }
    t
}

/// 4 IEEE half values (in u32 lanes) → f32, exact: exponent+mantissa shifted into place and scaled by
/// 2^112 (subnormals included), inf/NaN patched.
#[inline(always)]
fn half4_to_f32(h: v128) -> v128 {
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let em = i32x4_shl(v128_and(h, u32x4_splat(0x7fff)), 13);
    let scaled = f32x4_mul(em, f32x4_splat(f32::from_bits(0x7780_0000)));
    let special = i32x4_eq(v128_and(h, u32x4_splat(0x7c00)), u32x4_splat(0x7c00));
    let inf_nan = v128_or(em, u32x4_splat(0x7f80_0000));
    v128_or(v128_bitselect(inf_nan, scaled, special), sign)
}

fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    let n = w.len();
    let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut i = 0;
    while i + 8 <= n {
        let h = u16x8(
            w[i],
            w[i + 1],
            w[i + 2],
            w[i + 3],
            w[i + 4],
            w[i + 5],
            w[i + 6],
            w[i + 7],
        );
        a0 = f32x4_add(
            a0,
            f32x4_mul(half4_to_f32(u32x4_extend_low_u16x8(h)), f32s(&x[i..])),
        );
        a1 = f32x4_add(
            a1,
            f32x4_mul(half4_to_f32(u32x4_extend_high_u16x8(h)), f32s(&x[i + 4..])),
        );
        i += 8;
    }
    let mut t = hsum_f32(f32x4_add(a0, a1));
    for j in i..n {
        t += super::f16_to_f32(w[j]) * x[j];
    }
    t
}
