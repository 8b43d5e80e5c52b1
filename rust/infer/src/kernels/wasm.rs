//! wasm32 simd128 row kernels (compiled in when the build enables `+simd128`; wasm has no run-time
//! feature detection). q8_0 / q4_0 follow the reduction order of [`super::scalar::dot_q8`] bit for bit.
//!
//! Speed notes (V8 / SpiderMonkey compile each simd128 op to one or two SSE/AVX instructions):
//! * every hot loop walks `chunks_exact` slices and loads whole vectors with `v128_load`, so there are
//!   no per-element bounds checks and no lane-by-lane vector construction;
//! * integer group dots use `i32x4_dot_i16x8` (one `pmaddwd`) over sign-extended i8 halves;
//! * wasm has no fused multiply-add, so f32 dots keep 8 independent accumulators to hide the add latency.
//!
//! A second build adds `+relaxed-simd` (scripts/build_wasm.sh; the page loads it where the browser
//! validates relaxed SIMD). It changes only how exact integer group sums are formed:
//! `i32x4_relaxed_dot_i8x16_i7x16_add` (`pmaddubsw`+`pmaddwd`, or one `vpdpbusd`, on x86) is exact and
//! the same on every engine whenever its second operand lies in 0..=127 (no i16 pair sum can then
//! overflow), so it is used only that way: q4_0 multiplies the unsigned nibbles (0..=15) and subtracts
//! 8·Σx afterwards; q8_0 multiplies |x| (the activation quantizer clamps x to -127..=127) by w, or by
//! !w = -w-1 where x < 0, and adds back Σ_{x<0} |x|, which holds for every i8 w (-128 included). Group
//! sums are therefore the same integers as [`super::scalar`]'s and the reduction order is unchanged:
//! bit-identical results. With relaxed SIMD the q8_0 / q4_0 16-row panel kernels exist too
//! ([`panels`]). f32 / f16 dots use `f32x4_relaxed_madd` (one rounding with FMA hardware, two
//! without: f32 results are only ever equal within rounding across paths).

use std::arch::wasm32::*;

use super::scalar::finish_lanes;
use super::{Kernels, QRow, QK};

pub(super) fn simd128() -> Option<Kernels> {
    Some(Kernels {
        // The page's tests expect this name on either build; which build runs is reported by the worker.
        name: "simd128",
        dot_f32,
        dot_f16,
        dot_q8,
        dot_q4,
        dot_f32_block: None,
        dot_q8_rows: None,
        q8_lanes: None,
        widen_f16: super::f16::widen,
        token_lanes: None,
        f16_is_widened_f32: false,
        // Panels need a broadcast 4-byte dot: relaxed SIMD's i8 dot (the plain simd128 build keeps
        // rows).
        #[cfg(target_feature = "relaxed-simd")]
        panels: Some(panels()),
        #[cfg(not(target_feature = "relaxed-simd"))]
        panels: None,
        q8_in_panels: true,
        prefetch_rows: true,
        quantize_q8: super::quant::quantize_q8_0_groups,
        silu_gate: super::math::silu_gate_plain,
        attend_f32: super::attend::attend_plain,
        attend_f16: super::attend::attend_plain,
    })
}

/// The 16 bytes at `s[at..at + 16]` as one vector (panics when the slice is too short; inside the
/// `chunks_exact` loops below the check folds away because the chunk length is a constant).
#[inline(always)]
fn load_bytes<T: Copy>(s: &[T], at: usize) -> v128 {
    let bytes = std::mem::size_of_val(s);
    let start = at * std::mem::size_of::<T>();
    assert!(start + 16 <= bytes);
    // SAFETY: bytes start..start+16 of `s` are in bounds (checked above); v128_load has no alignment
    // requirement and every bit pattern is a valid v128.
    unsafe { v128_load(s.as_ptr().cast::<u8>().add(start).cast::<v128>()) }
}

/// 32 q8_0 values of one group.
#[inline(always)]
fn load_q8(s: &[i8]) -> [v128; 2] {
    [load_bytes(s, 0), load_bytes(s, 16)]
}

/// The high nibble of every byte, as a byte. A 16-bit shift plus a mask: x86 has no byte shift, and
/// engines emulate `i8x16.shr_u` with several instructions, where a 16-bit shift is one.
#[inline(always)]
fn high_nibbles(b: v128) -> v128 {
    v128_and(u16x8_shr(b, 4), u8x16_splat(0x0f))
}

/// 32 q4_0 values (16 packed bytes) as i8 in -8..=7: low nibbles are elements 0..16, high 16..32.
#[cfg(not(target_feature = "relaxed-simd"))] // the plain build's integer dots
#[inline(always)]
fn load_q4(p: &[u8]) -> [v128; 2] {
    let b = load_bytes(p, 0);
    let eight = i8x16_splat(8);
    [
        i8x16_sub(v128_and(b, u8x16_splat(0x0f)), eight),
        i8x16_sub(high_nibbles(b), eight),
    ]
}

/// Σ of the 16 i8·i8 products of two vectors as 4 i32 partial sums (exact: each i16·i16 product and
/// pair sum fits i32).
#[cfg(not(target_feature = "relaxed-simd"))] // the plain build's integer dots
#[inline(always)]
fn dot_i8x16(w: v128, x: v128) -> v128 {
    i32x4_add(
        i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), i16x8_extend_low_i8x16(x)),
        i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), i16x8_extend_high_i8x16(x)),
    )
}

/// One group's i8·i8 products as 4 i32 partial sums (exact).
#[cfg(not(target_feature = "relaxed-simd"))] // the plain build's integer dots
#[inline(always)]
fn group_dot(w: [v128; 2], x: [v128; 2]) -> v128 {
    i32x4_add(dot_i8x16(w[0], x[0]), dot_i8x16(w[1], x[1]))
}

/// Exact sum of the 4 lanes.
#[inline(always)]
fn hsum_i32(v: v128) -> i32 {
    let v = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
    let v = i32x4_add(v, i32x4_shuffle::<1, 0, 3, 2>(v, v));
    i32x4_extract_lane::<0>(v)
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

fn dot_q8(qw: &[i8], sw: &[f32], x: &QRow) -> f32 {
    dot_groups::<i8, QK, false>(qw, q8_group, sw, x)
}

fn dot_q4(packed: &[u8], sw: &[f32], x: &QRow) -> f32 {
    dot_groups::<u8, { QK / 2 }, Q4_OFFSET>(packed, q4_group, sw, x)
}

/// One q8_0 group's exact sum as 4 i32 partial sums.
#[cfg(not(target_feature = "relaxed-simd"))]
#[inline(always)]
fn q8_group(w: &[i8], x: &[i8]) -> v128 {
    group_dot(load_q8(w), load_q8(x))
}

/// `x` as (|x|, mask of x < 0, -Σ_{x<0} |x| as 4 i32 partial sums): see [`q8_group`].
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn split_sign(x: v128, corr: v128) -> (v128, v128, v128) {
    let neg = i8x16_lt(x, i8x16_splat(0));
    let abs_x = i8x16_abs(x);
    (
        abs_x,
        neg,
        i32x4_relaxed_dot_i8x16_i7x16_add(neg, abs_x, corr),
    )
}

/// Σ w·x over a group with |x| (7-bit) as the relaxed dot's second operand: where x < 0 the first
/// operand is !w = -w-1, whose product is w·x - |x|; the dot of the mask (-1) with |x| is exactly that
/// excess, subtracted at the end.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn q8_group(w: &[i8], x: &[i8]) -> v128 {
    let (w, x) = (load_q8(w), load_q8(x));
    let (mut acc, mut corr) = (i32x4_splat(0), i32x4_splat(0));
    for h in 0..2 {
        let (abs_x, neg, c) = split_sign(x[h], corr);
        corr = c;
        acc = i32x4_relaxed_dot_i8x16_i7x16_add(v128_xor(w[h], neg), abs_x, acc);
    }
    i32x4_sub(acc, corr)
}

/// Whether q4 group sums come out offset by +8·Σx (the relaxed path multiplies unsigned nibbles).
const Q4_OFFSET: bool = cfg!(target_feature = "relaxed-simd");

#[cfg(not(target_feature = "relaxed-simd"))]
#[inline(always)]
fn q4_group(p: &[u8], x: &[i8]) -> v128 {
    group_dot(load_q4(p), load_q8(x))
}

/// Σ nibble·x over the group (nibbles 0..=15 are 7-bit); the caller subtracts 8·Σx.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn q4_group(p: &[u8], x: &[i8]) -> v128 {
    let b = load_bytes(p, 0);
    let x = load_q8(x);
    let lo = v128_and(b, u8x16_splat(0x0f));
    let hi = high_nibbles(b);
    let acc = i32x4_relaxed_dot_i8x16_i7x16_add(x[0], lo, i32x4_splat(0));
    i32x4_relaxed_dot_i8x16_i7x16_add(x[1], hi, acc)
}

/// The quantized row dot in the defining order: groups 8 at a time, group g's exact integer sum times
/// `sw[g] * sx[g]` added to lane g % 8 (lanes 0..4 in `lo`, 4..8 in `hi`); the remaining groups (also
/// vector dots, one group at a time) and the final [`super::reduce8`] in [`finish_lanes`].
/// `w` holds `GROUP_BYTES` bytes per group; `group` gives a group's 4 partial sums. With `OFFSET` they
/// exceed the true sum by 8·Σx (x.sums), which is subtracted.
#[inline(always)]
fn dot_groups<T: Copy, const GROUP_BYTES: usize, const OFFSET: bool>(
    w: &[T],
    group: impl Fn(&[T], &[i8]) -> v128,
    sw: &[f32],
    x: &QRow,
) -> f32 {
    let (sx, qx) = (x.d, x.qs);
    let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let blocks = w
        .chunks_exact(8 * GROUP_BYTES)
        .zip(qx.chunks_exact(8 * QK))
        .zip(sw.chunks_exact(8).zip(sx.chunks_exact(8)))
        .zip(x.sums.chunks_exact(8));
    let mut done = 0;
    for (((wb, xb), (swb, sxb)), sums) in blocks {
        // Written out (not a loop) so the 8 groups stay in registers.
        let gd = |j: usize| {
            group(
                &wb[j * GROUP_BYTES..(j + 1) * GROUP_BYTES],
                &xb[j * QK..(j + 1) * QK],
            )
        };
        let v = [gd(0), gd(1), gd(2), gd(3), gd(4), gd(5), gd(6), gd(7)];
        let mut s_lo = hsum4x4([v[0], v[1], v[2], v[3]]);
        let mut s_hi = hsum4x4([v[4], v[5], v[6], v[7]]);
        if OFFSET {
            s_lo = i32x4_sub(s_lo, i32x4_shl(load_bytes(sums, 0), 3));
            s_hi = i32x4_sub(s_hi, i32x4_shl(load_bytes(sums, 4), 3));
        }
        let d_lo = f32x4_mul(load_bytes(swb, 0), load_bytes(sxb, 0));
        let d_hi = f32x4_mul(load_bytes(swb, 4), load_bytes(sxb, 4));
        lo = f32x4_add(lo, f32x4_mul(f32x4_convert_i32x4(s_lo), d_lo));
        hi = f32x4_add(hi, f32x4_mul(f32x4_convert_i32x4(s_hi), d_hi));
        done += 8;
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
    finish_lanes(lanes, done, sw, sx, |g| {
        let sum = hsum_i32(group(
            &w[g * GROUP_BYTES..(g + 1) * GROUP_BYTES],
            &qx[g * QK..(g + 1) * QK],
        ));
        if OFFSET {
            sum - 8 * x.sums[g]
        } else {
            sum
        }
    })
}

#[inline(always)]
fn hsum_f32(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

/// a·b + c: fused where the engine has FMA (relaxed build), else a product and a sum.
#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    return f32x4_relaxed_madd(a, b, c);
    #[cfg(not(target_feature = "relaxed-simd"))]
    return f32x4_add(c, f32x4_mul(a, b));
}

/// f32 dot with 8 independent accumulators over blocks of 32 (wasm has no fused multiply-add), then
/// blocks of 4, then single values.
fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut a = [f32x4_splat(0.0); 8];
    let (wc, xc) = (w.chunks_exact(32), x.chunks_exact(32));
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (wk, xk) in wc.zip(xc) {
        for (k, ak) in a.iter_mut().enumerate() {
            *ak = madd(load_bytes(wk, 4 * k), load_bytes(xk, 4 * k), *ak);
        }
    }
    let (wc4, xc4) = (wr.chunks_exact(4), xr.chunks_exact(4));
    let (wr1, xr1) = (wc4.remainder(), xc4.remainder());
    for (wk, xk) in wc4.zip(xc4) {
        a[0] = madd(load_bytes(wk, 0), load_bytes(xk, 0), a[0]);
    }
    let s = [
        f32x4_add(a[0], a[4]),
        f32x4_add(a[1], a[5]),
        f32x4_add(a[2], a[6]),
        f32x4_add(a[3], a[7]),
    ];
    let mut t = hsum_f32(f32x4_add(f32x4_add(s[0], s[2]), f32x4_add(s[1], s[3])));
    for (&wv, &xv) in wr1.iter().zip(xr1) {
        t += wv * xv;
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

/// f16 weights · f32 activations: 8 halves per load, converted exactly, 2 accumulators.
fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (wk, xk) in wc.zip(xc) {
        let h = load_bytes(wk, 0);
        let lo = half4_to_f32(u32x4_extend_low_u16x8(h));
        let hi = half4_to_f32(u32x4_extend_high_u16x8(h));
        a0 = madd(lo, load_bytes(xk, 0), a0);
        a1 = madd(hi, load_bytes(xk, 4), a1);
    }
    let mut t = hsum_f32(f32x4_add(a0, a1));
    for (&wv, &xv) in wr.iter().zip(xr) {
        t += super::f16_to_f32(wv) * xv;
    }
    t
}

/// Panel kernels ([`super::panel`] layout) for the relaxed-SIMD build: in a panel one i32 lane is one
/// row, so `i32x4_relaxed_dot_i8x16_i7x16_add` with 4 activation bytes broadcast to every lane advances
/// 4 rows × 4 columns per instruction and a group's exact sums come out one row per lane (no horizontal
/// sums, no per-row calls). The order of the f32 work is the row definition's, vectorized across rows:
/// lane sum `g % 8` of each row gains `(s as f32) * (sw * sx)` group by group, then [`super::reduce8`]'s
/// order lane-wise. The plain SIMD128 build keeps the row layout (its exact i8 dots gain little here).
#[cfg(target_feature = "relaxed-simd")]
fn panels() -> super::Panels {
    super::Panels {
        dot_q8: |w, sw, xs, out| {
            for (x, out) in xs.iter().zip(out.chunks_exact_mut(ROWS)) {
                panel_one::<i8, { ROWS * QK }>(w, sw, x, out, panel_group_q8, 0, TOUCH_AHEAD);
            }
        },
        dot_q4: |p, sw, xs, out| {
            for (x, out) in xs.iter().zip(out.chunks_exact_mut(ROWS)) {
                panel_one::<u8, { ROWS * QK / 2 }>(p, sw, x, out, panel_group_q4, 8, 0);
            }
        },
        // WASM has no prefetch instruction (q8_0 panels read ahead instead: `TOUCH_AHEAD`).
        prefetch_one: false,
        pairs: false,
    }
}

#[cfg(target_feature = "relaxed-simd")]
use super::panel::ROWS;

/// 4 activation bytes (columns `at..at + 4`) in every i32 lane.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn broadcast4(qs: &[i8], at: usize) -> v128 {
    let b: [i8; 4] = qs[at..at + 4].try_into().expect("4 bytes");
    i32x4_splat(i32::from_le_bytes(b.map(|v| v as u8)))
}

/// One group of one q8_0 panel (512 bytes: 8 steps × 16 rows × 4 columns) times its 32 activations:
/// 4 vectors of exact i32 sums (rows 4q..4q+4 in vector q), by [`q8_group`]'s complement trick with
/// the 4 activation bytes of each step broadcast.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn panel_group_q8(w: &[i8], xg: &[i8]) -> [v128; 4] {
    let mut acc = [i32x4_splat(0); 4];
    let mut corr = i32x4_splat(0);
    for s in 0..QK / 4 {
        let (abs_x, neg, c) = split_sign(broadcast4(xg, 4 * s), corr);
        corr = c;
        for (q, a) in acc.iter_mut().enumerate() {
            let wv = v128_xor(load_bytes(w, s * 64 + q * 16), neg);
            *a = i32x4_relaxed_dot_i8x16_i7x16_add(wv, abs_x, *a);
        }
    }
    acc.map(|a| i32x4_sub(a, corr))
}

/// One group of one q4_0 panel (256 bytes: 4 step pairs × 16 rows × 4 bytes, even step in the low
/// nibbles, odd in the high): Σ nibble·x per row (nibbles 0..=15 are 7-bit); the caller subtracts 8·Σx.
/// The 16-bit pair sums are accumulated in i16 and widened once per group: a lane sums 16 products of
/// at most 15·127, so |sum| <= 30480 fits (no saturation, no wrap-around: exact).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn panel_group_q4(p: &[u8], xg: &[i8]) -> [v128; 4] {
    let mut acc = [i16x8_splat(0); 4];
    for sp in 0..QK / 8 {
        let (xe, xo) = (broadcast4(xg, 8 * sp), broadcast4(xg, 8 * sp + 4));
        for (q, a) in acc.iter_mut().enumerate() {
            let b = load_bytes(p, sp * 64 + q * 16);
            let lo = v128_and(b, u8x16_splat(0x0f));
            *a = i16x8_add(*a, i16x8_relaxed_dot_i8x16_i7x16(xe, lo));
            *a = i16x8_add(*a, i16x8_relaxed_dot_i8x16_i7x16(xo, high_nibbles(b)));
        }
    }
    // i16 lanes 2j, 2j+1 hold row 4q+j's 4 columns of each step.
    acc.map(|a| i32x4_extadd_pairwise_i16x8(a))
}

/// How far ahead (in elements; bytes for q8_0) the q8_0 panel kernel touches the weights it will
/// read: the engine's stand-in for the prefetch instruction WASM lacks. Without it, decode speed
/// depended on where the model's bytes landed relative to the engine's buffers (70–90 tok/s for one
/// model and build under Node on an AMD Zen 1); with it, 85–100 at every placement tried. 512–2048
/// measured alike; q4_0 panels (half the bytes per multiply) gained nothing and do not touch
/// (docs/performance.md, "The browser page").
#[cfg(target_feature = "relaxed-simd")]
const TOUCH_AHEAD: usize = 1024;

/// Reads one element of each 64-byte line of `s[at..at + len]` (clamped to the slice) with a volatile
/// load, which neither the compiler nor the WASM engine drops: the line is then in cache, or on its
/// way, when the kernel reaches it.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn touch_lines<T: Copy>(s: &[T], at: usize, len: usize) {
    let Some(last) = s.len().checked_sub(1) else {
        return;
    };
    let step = (64 / std::mem::size_of::<T>()).max(1);
    for i in (at..at + len).step_by(step) {
        // SAFETY: the index is clamped into the slice.
        unsafe { std::ptr::read_volatile(s.as_ptr().add(i.min(last))) };
    }
}

/// One panel (16 rows) times one activation row: `out[i]` = row i's dot in the defining order.
/// `GROUP_BYTES` is the panel's bytes per group; `offset` · Σx is subtracted from every group sum.
/// With `touch_ahead` > 0 each group first touches the panel's lines that far ahead ([`TOUCH_AHEAD`]).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn panel_one<T: Copy, const GROUP_BYTES: usize>(
    w: &[T],
    sw: &[f32],
    x: &QRow,
    out: &mut [f32],
    group: impl Fn(&[T], &[i8]) -> [v128; 4],
    offset: i32,
    touch_ahead: usize,
) {
    // lanes[l][q]: lane sum l of rows 4q..4q+4.
    let mut lanes = [[f32x4_splat(0.0); 4]; 8];
    let blocks = w
        .chunks_exact(GROUP_BYTES)
        .zip(x.qs.chunks_exact(QK))
        .zip(sw.chunks_exact(ROWS))
        .zip(x.d.iter().zip(x.sums));
    for (g, (((wg, xg), swg), (&sx, &sum))) in blocks.enumerate() {
        if touch_ahead > 0 {
            touch_lines(w, g * GROUP_BYTES + touch_ahead, GROUP_BYTES);
        }
        let sums = group(wg, xg);
        let bias = i32x4_splat(offset * sum);
        let sx = f32x4_splat(sx);
        let lane = &mut lanes[g % 8];
        for (q, (l, s)) in lane.iter_mut().zip(sums).enumerate() {
            let s = f32x4_convert_i32x4(i32x4_sub(s, bias));
            *l = f32x4_add(*l, f32x4_mul(s, f32x4_mul(load_bytes(swg, 4 * q), sx)));
        }
    }
    for (q, o) in out.chunks_exact_mut(4).enumerate() {
        let a = |l: usize| lanes[l][q];
        let s = [
            f32x4_add(a(0), a(4)),
            f32x4_add(a(1), a(5)),
            f32x4_add(a(2), a(6)),
            f32x4_add(a(3), a(7)),
        ];
        let r = f32x4_add(f32x4_add(s[0], s[2]), f32x4_add(s[1], s[3]));
        o.copy_from_slice(&[
            f32x4_extract_lane::<0>(r),
            f32x4_extract_lane::<1>(r),
            f32x4_extract_lane::<2>(r),
            f32x4_extract_lane::<3>(r),
        ]);
    }
}
