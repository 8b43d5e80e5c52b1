//! aarch64 row kernels: NEON (every aarch64 CPU) and NEON + `dotprod` (SDOT; Cortex-A76 in RK3588,
//! A78AE in Jetson Orin), selected at run time.
//!
//! The q8_0 / q4_0 kernels reproduce [`super::scalar::dot_q8`] bit for bit: exact i32 group dots, then
//! `(s as f32) * (sw * sx)` added to lane `g % 8` (two `float32x4_t` hold lanes 0..4 and 4..8), then
//! [`reduce8`]. SDOT is emitted with inline assembly because its intrinsic is not stable Rust yet.

use std::arch::aarch64::*;
use std::arch::asm;

use super::scalar::{finish_lanes, finish_tile, group_q4, group_q8};
use super::{block_tiles, inputs_in, lane_tiles, Kernels, Panels, QRow, TokenLanes, QK};

/// The plain NEON path (NEON is part of the aarch64 baseline).
pub(super) fn neon() -> Option<Kernels> {
    // SAFETY (wrappers): NEON is always present on aarch64.
    Some(Kernels {
        name: "neon",
        dot_f32: |w, x| unsafe { dot_f32(w, x) },
        dot_f16: |w, x| unsafe { dot_f16(w, x) },
        dot_q8: |qw, sw, x| unsafe { dot_q8::<false>(qw, sw, x.qs, x.d) },
        dot_q4: |p, sw, x| unsafe { dot_q4::<false>(p, sw, x.qs, x.d) },
        dot_f32_block: Some(|w, cols, x, out, stride| unsafe {
            dot_f32_block(w, cols, x, out, stride)
        }),
        dot_q8_rows: None,
        q8_lanes: None,
        widen_f16: super::f16::widen,
        token_lanes: Some(TokenLanes {
            transpose: super::transpose_inputs,
            block: |w, cols, xt, n, out, stride| unsafe {
                tokens_f32_block(w, cols, xt, n, out, stride)
            },
        }),
        f16_is_widened_f32: true,
        panels: None,
        q8_in_panels: true,
        prefetch_rows: true,
        quantize_q8: super::quant::quantize_q8_0_groups,
        silu_gate: super::math::silu_gate_plain,
        attend_f32: super::attend::attend_plain,
        attend_f16: super::attend::attend_plain,
    })
}

/// NEON with the int8 dot-product instruction, when the CPU reports `dotprod`: the plain path's
/// kernels but for the q8_0 / q4_0 dots.
pub(super) fn neon_dotprod() -> Option<Kernels> {
    // SAFETY (wrappers): only reachable through a Kernels built after this check.
    let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
    dotprod.then(|| Kernels {
        name: "neon-dotprod",
        dot_q8: |qw, sw, x| unsafe { dot_q8_dotprod(qw, sw, x.qs, x.d) },
        dot_q4: |p, sw, x| unsafe { dot_q4_dotprod(p, sw, x.qs, x.d) },
        panels: Some(dotprod_panels()),
        ..neon().expect("NEON is baseline on aarch64")
    })
}

/// acc += per-lane sums of 4 i8·i8 products (SDOT).
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// One 32-value group (two halves of 16) as 4 i32 partial sums, with SDOT or widening multiplies.
#[inline(always)]
unsafe fn group_dot<const DOT: bool>(w: [int8x16_t; 2], x: [int8x16_t; 2]) -> int32x4_t {
    if DOT {
        sdot(sdot(vdupq_n_s32(0), w[0], x[0]), w[1], x[1])
    } else {
        let mut acc = vdupq_n_s32(0);
        for h in 0..2 {
            acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w[h]), vget_low_s8(x[h])));
            acc = vpadalq_s16(acc, vmull_high_s8(w[h], x[h]));
        }
        acc
    }
}

/// Exact sums of 4 vectors: lane j = Σ lanes of v[j].
#[inline(always)]
unsafe fn hsum4x4(v: [int32x4_t; 4]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]))
}

#[inline(always)]
unsafe fn accumulate4(
    acc: float32x4_t,
    s: int32x4_t,
    sw: *const f32,
    sx: *const f32,
) -> float32x4_t {
    let d = vmulq_f32(vld1q_f32(sw), vld1q_f32(sx));
    vaddq_f32(acc, vmulq_f32(vcvtq_f32_s32(s), d))
}

#[inline(always)]
unsafe fn load_q8(p: *const i8) -> [int8x16_t; 2] {
    [vld1q_s8(p), vld1q_s8(p.add(16))]
}

/// 32 q4_0 values (16 packed bytes) as i8 in -8..=7: low nibbles are elements 0..16, high 16..32.
#[inline(always)]
unsafe fn load_q4(p: *const u8) -> [int8x16_t; 2] {
    let b = vld1q_u8(p);
    let eight = vdupq_n_s8(8);
    let lo = vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f)));
    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(b));
    [vsubq_s8(lo, eight), vsubq_s8(hi, eight)]
}

/// The shared loop: 8 groups per step into two 4-lane accumulators, scalar tail, [`reduce8`].
#[inline(always)]
unsafe fn dot_groups<const DOT: bool>(
    groups: usize,
    load_w: impl Fn(usize) -> [int8x16_t; 2],
    qx: &[i8],
    sw: &[f32],
    sx: &[f32],
    tail: impl Fn(usize) -> i32,
) -> f32 {
    let px = qx.as_ptr();
    let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut g = 0;
    while g + 8 <= groups {
        let mut v = [vdupq_n_s32(0); 8];
        for (j, vj) in v.iter_mut().enumerate() {
            *vj = group_dot::<DOT>(load_w(g + j), load_q8(px.add((g + j) * QK)));
        }
        let s_lo = hsum4x4([v[0], v[1], v[2], v[3]]);
        let s_hi = hsum4x4([v[4], v[5], v[6], v[7]]);
        lo = accumulate4(lo, s_lo, sw.as_ptr().add(g), sx.as_ptr().add(g));
        hi = accumulate4(hi, s_hi, sw.as_ptr().add(g + 4), sx.as_ptr().add(g + 4));
        g += 8;
    }
    let mut lanes = [0f32; 8];
    vst1q_f32(lanes.as_mut_ptr(), lo);
    vst1q_f32(lanes.as_mut_ptr().add(4), hi);
    finish_lanes(lanes, g, sw, sx, tail)
}

#[target_feature(enable = "neon")]
unsafe fn dot_q8<const DOT: bool>(qw: &[i8], sw: &[f32], qx: &[i8], sx: &[f32]) -> f32 {
    let pw = qw.as_ptr();
    dot_groups::<DOT>(
        sw.len(),
        |g| load_q8(pw.add(g * QK)),
        qx,
        sw,
        sx,
        |g| group_q8(qw, qx, g),
    )
}

#[target_feature(enable = "neon")]
unsafe fn dot_q4<const DOT: bool>(p: &[u8], sw: &[f32], qx: &[i8], sx: &[f32]) -> f32 {
    let pp = p.as_ptr();
    dot_groups::<DOT>(
        sw.len(),
        |g| load_q4(pp.add(g * QK / 2)),
        qx,
        sw,
        sx,
        |g| group_q4(p, qx, g),
    )
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_q8_dotprod(qw: &[i8], sw: &[f32], qx: &[i8], sx: &[f32]) -> f32 {
    dot_q8::<true>(qw, sw, qx, sx)
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_q4_dotprod(p: &[u8], sw: &[f32], qx: &[i8], sx: &[f32]) -> f32 {
    dot_q4::<true>(p, sw, qx, sx)
}

/// f32 dot with 4 independent FMA chains (16 values per step).
#[target_feature(enable = "neon")]
unsafe fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len();
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let mut a = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, ak) in a.iter_mut().enumerate() {
            *ak = vfmaq_f32(
                *ak,
                vld1q_f32(pw.add(i + 4 * k)),
                vld1q_f32(px.add(i + 4 * k)),
            );
        }
        i += 16;
    }
    let mut t = vaddvq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])));
    for j in i..n {
        t += w[j] * x[j];
    }
    t
}

/// 4 IEEE half values → f32 with integer operations (exact, including subnormals, inf and NaN):
/// shifting exponent+mantissa into f32 position and scaling by 2^112 rebiases the exponent.
#[inline(always)]
unsafe fn half4_to_f32(h: uint32x4_t) -> float32x4_t {
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    let em = vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff)));
    let scaled = vreinterpretq_u32_f32(vmulq_f32(
        vreinterpretq_f32_u32(em),
        vdupq_n_f32(f32::from_bits(0x7780_0000)), // 2^112
    ));
    let is_special = vceqq_u32(vandq_u32(h, vdupq_n_u32(0x7c00)), vdupq_n_u32(0x7c00));
    let special = vorrq_u32(em, vdupq_n_u32(0x7f80_0000));
    vreinterpretq_f32_u32(vorrq_u32(vbslq_u32(is_special, special, scaled), sign))
}

/// f16 weights · f32 activations: exactly [`dot_f32`] of the widened weights (the same 4 chains and
/// reduction), so prefill may widen a row group once and use the f32 block kernel with decode's bits.
#[target_feature(enable = "neon")]
unsafe fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    let n = w.len();
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let mut a = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        let (h0, h1) = (vld1q_u16(pw.add(i)), vld1q_u16(pw.add(i + 8)));
        let wv = [
            half4_to_f32(vmovl_u16(vget_low_u16(h0))),
            half4_to_f32(vmovl_high_u16(h0)),
            half4_to_f32(vmovl_u16(vget_low_u16(h1))),
            half4_to_f32(vmovl_high_u16(h1)),
        ];
        for (k, (ak, wk)) in a.iter_mut().zip(wv).enumerate() {
            *ak = vfmaq_f32(*ak, wk, vld1q_f32(px.add(i + 4 * k)));
        }
        i += 16;
    }
    let mut t = vaddvq_f32(vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])));
    for j in i..n {
        t += super::f16_to_f32(w[j]) * x[j];
    }
    t
}

/// Every row of `w` (`cols` values each) · every input of `x` → `out[i * stride + t]`, each product
/// exactly as [`dot_f32`] computes it (its 4 chains of 4 lanes, `(a0 + a1) + (a2 + a3)`, the
/// pairwise `vaddvq_f32`, the scalar tail). Tiles of 4 rows × 4 inputs share their loads (8 loads
/// per 16 FMAs; a single dot needs 2 per FMA).
#[target_feature(enable = "neon")]
unsafe fn dot_f32_block(w: &[f32], cols: usize, x: &[f32], out: &mut [f32], stride: usize) {
    let sizes = (w.len(), cols, x.len(), out.len(), stride);
    let (pw, px, po) = (w.as_ptr(), x.as_ptr(), out.as_mut_ptr());
    block_tiles(sizes, 4, |r, t, whole, left| {
        let (w0, x0, o) = (pw.add(r * cols), px.add(t * cols), po.add(r * stride + t));
        match (whole, left) {
            (true, 4..) => f32_tile::<4, 4>(w0, x0, cols, o, stride),
            (true, 3) => f32_tile::<4, 3>(w0, x0, cols, o, stride),
            (true, 2) => f32_tile::<4, 2>(w0, x0, cols, o, stride),
            (true, _) => f32_tile::<4, 1>(w0, x0, cols, o, stride),
            (false, 4..) => f32_tile::<1, 4>(w0, x0, cols, o, stride),
            (false, _) => f32_tile::<1, 1>(w0, x0, cols, o, stride),
        }
    });
}

/// Every row of `w` (`cols` values each) · every input → `out[i * stride + t]` for t < n, with the
/// inputs in vector lanes (`xt[(v * cols + k) * 16 + l]` is column k of input 16v + l; see
/// [`super::TokenLanes`]): each result one chain of fused multiply-adds in column order, no
/// horizontal sums. A lane vector of 16 inputs is four `float32x4_t`; tiles of 6 rows × 16 inputs
/// keep 24 sums in registers, and each column costs 4 loads and 6 load-and-replicate for 24 FMAs
/// (the row-dot tiles of [`dot_f32_block`] need 8 loads for 16, and the pairwise sums).
#[target_feature(enable = "neon")]
unsafe fn tokens_f32_block(
    w: &[f32],
    cols: usize,
    xt: &[f32],
    n: usize,
    out: &mut [f32],
    stride: usize,
) {
    let sizes = (w.len(), cols, xt.len(), n, out.len(), stride);
    let (pw, px, po) = (w.as_ptr(), xt.as_ptr(), out.as_mut_ptr());
    lane_tiles(sizes, 1, |t| {
        let at = (
            pw.add(t.r0 * cols),
            cols,
            px.add(t.v0 * cols * 16),
            po.add(t.r0 * stride + t.v0 * 16),
            stride,
            inputs_in(n, t.v0),
        );
        match t.rows {
            6 => token_tile::<6>(at, t.k),
            5 => token_tile::<5>(at, t.k),
            4 => token_tile::<4>(at, t.k),
            3 => token_tile::<3>(at, t.k),
            2 => token_tile::<2>(at, t.k),
            _ => token_tile::<1>(at, t.k),
        }
    });
}

/// R rows × one lane vector of [`tokens_f32_block`] over columns `k`: (rows, cols, inputs, out,
/// stride, inputs in this vector); the sums continue from `out` after the first pass. The sums go
/// through a buffer, so a vector with fewer than 16 inputs touches only theirs (NEON has no masked
/// loads and stores).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn token_tile<const R: usize>(
    (w, cols, x, out, stride, lanes): (*const f32, usize, *const f32, *mut f32, usize, usize),
    k: std::ops::Range<usize>,
) {
    let mut a = [[vdupq_n_f32(0.0); 4]; R];
    if k.start > 0 {
        for (r, ar) in a.iter_mut().enumerate() {
            let mut buf = [0f32; 16];
            std::ptr::copy_nonoverlapping(out.add(r * stride), buf.as_mut_ptr(), lanes);
            for (q, aq) in ar.iter_mut().enumerate() {
                *aq = vld1q_f32(buf.as_ptr().add(4 * q));
            }
        }
    }
    for c in k {
        let xv: [float32x4_t; 4] = std::array::from_fn(|q| vld1q_f32(x.add(c * 16 + 4 * q)));
        for (r, ar) in a.iter_mut().enumerate() {
            let wr = vld1q_dup_f32(w.add(r * cols + c));
            for (aq, &xq) in ar.iter_mut().zip(&xv) {
                *aq = vfmaq_f32(*aq, xq, wr);
            }
        }
    }
    for (r, ar) in a.iter().enumerate() {
        let mut buf = [0f32; 16];
        for (q, &aq) in ar.iter().enumerate() {
            vst1q_f32(buf.as_mut_ptr().add(4 * q), aq);
        }
        std::ptr::copy_nonoverlapping(buf.as_ptr(), out.add(r * stride), lanes);
    }
}

/// One tile of [`dot_f32_block`]: R rows from `w` and T inputs from `x` (consecutive, `cols` apart);
/// returns T. The chains run one after another (R × T accumulators each, in registers).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn f32_tile<const R: usize, const T: usize>(
    w: *const f32,
    x: *const f32,
    cols: usize,
    out: *mut f32,
    stride: usize,
) -> usize {
    let main = cols / 16 * 16;
    // Chain c: columns 4c.. of every 16-wide step.
    let chain = |c: usize| {
        let mut a = [[vdupq_n_f32(0.0); T]; R];
        for i in (4 * c..main).step_by(16) {
            let xv: [float32x4_t; T] = std::array::from_fn(|t| vld1q_f32(x.add(t * cols + i)));
            for (r, ar) in a.iter_mut().enumerate() {
                let wv = vld1q_f32(w.add(r * cols + i));
                for (at, &xt) in ar.iter_mut().zip(&xv) {
                    *at = vfmaq_f32(*at, wv, xt);
                }
            }
        }
        a
    };
    let add = |a: [[float32x4_t; T]; R], b: [[float32x4_t; T]; R]| {
        let mut s = a;
        for (sr, br) in s.iter_mut().zip(&b) {
            for (st, &bt) in sr.iter_mut().zip(br) {
                *st = vaddq_f32(*st, bt);
            }
        }
        s
    };
    let s01 = add(chain(0), chain(1));
    let s = add(s01, add(chain(2), chain(3)));
    let mut sums = [[0f32; T]; R];
    for (sr, vr) in sums.iter_mut().zip(&s) {
        if T == 4 {
            // Four reductions at once by the same pairwise additions: lane t is input t's.
            let v = vpaddq_f32(vpaddq_f32(vr[0], vr[1]), vpaddq_f32(vr[2], vr[3]));
            vst1q_f32(sr.as_mut_ptr(), v);
        } else {
            for (st, &v) in sr.iter_mut().zip(vr) {
                *st = vaddvq_f32(v);
            }
        }
    }
    finish_tile(sums, (w, x, cols, main), out, stride);
    T
}

/// The 16-row panel kernels of the NEON dotprod path (see [`super::panel`]).
fn dotprod_panels() -> Panels {
    // SAFETY (wrappers): only reachable through the Kernels that [`neon_dotprod`] builds after its
    // check.
    Panels {
        dot_q8: |qw, sw, xs, out| unsafe { panel_q8_dotprod(qw, sw, xs, out) },
        dot_q4: |p, sw, xs, out| unsafe { panel_q4_dotprod(p, sw, xs, out) },
        // Whole panels requested ahead by the caller, as for the scalar panels (the per-group
        // requests of the x86 kernels are not tried on ARM: docs/performance.md).
        prefetch_one: false,
        pairs: false,
    }
}

/// 4 activation bytes (32-bit lane L of `x`) repeated in every lane.
#[inline(always)]
unsafe fn lane4<const L: i32>(x: int8x16_t) -> int8x16_t {
    vreinterpretq_s8_s32(vdupq_laneq_s32::<L>(vreinterpretq_s32_s8(x)))
}

/// Step `st` (0..8) of a group: the 4 activation bytes of that step, broadcast.
#[inline(always)]
unsafe fn step_bytes(x: [int8x16_t; 2], st: usize) -> int8x16_t {
    let v = x[st / 4];
    match st % 4 {
        0 => lane4::<0>(v),
        1 => lane4::<1>(v),
        2 => lane4::<2>(v),
        _ => lane4::<3>(v),
    }
}

/// One panel · one activation row, given `sums(g)`: group g's exact integer dots of the 16 rows as
/// 4 vectors (rows 0..4, 4..8, 8..12, 12..16). Lane accumulator g % 8, then [`reduce8`] per row.
#[inline(always)]
unsafe fn panel_one(x: &QRow, sw: &[f32], out: &mut [f32], sums: impl Fn(usize) -> [int32x4_t; 4]) {
    let groups = x.d.len();
    assert!(sw.len() >= 16 * groups && out.len() >= 16);
    let ps = sw.as_ptr();
    let mut acc = [[vdupq_n_f32(0.0); 4]; 8];
    for g in 0..groups {
        let s = sums(g);
        let sx = vdupq_n_f32(x.d[g]);
        let lane = &mut acc[g % 8];
        for q in 0..4 {
            let d = vmulq_f32(vld1q_f32(ps.add(g * 16 + q * 4)), sx);
            lane[q] = vaddq_f32(lane[q], vmulq_f32(vcvtq_f32_s32(s[q]), d));
        }
    }
    for q in 0..4 {
        // reduce8: ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)).
        let a = |j: usize| acc[j][q];
        let r = vaddq_f32(
            vaddq_f32(vaddq_f32(a(0), a(4)), vaddq_f32(a(2), a(6))),
            vaddq_f32(vaddq_f32(a(1), a(5)), vaddq_f32(a(3), a(7))),
        );
        vst1q_f32(out.as_mut_ptr().add(q * 4), r);
    }
}

/// q8_0 panel: per step, 4 × 16 weight bytes (4 rows each) SDOT the step's 4 activation bytes.
#[target_feature(enable = "neon,dotprod")]
unsafe fn panel_q8_dotprod(qs: &[i8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    for (x, out) in xs.iter().zip(out.chunks_exact_mut(16)) {
        let groups = x.d.len();
        assert!(qs.len() >= groups * 512 && x.qs.len() >= groups * QK);
        let (pw, px) = (qs.as_ptr(), x.qs.as_ptr());
        panel_one(x, sw, out, |g| {
            let xv = load_q8(px.add(g * QK));
            let mut s = [vdupq_n_s32(0); 4];
            for st in 0..8 {
                let xb = step_bytes(xv, st);
                for (q, sq) in s.iter_mut().enumerate() {
                    *sq = sdot(*sq, vld1q_s8(pw.add(g * 512 + st * 64 + q * 16)), xb);
                }
            }
            s
        });
    }
}

/// q4_0 panel: each 64 bytes hold two steps (low / high nibbles, 0..=15); 8·Σx removed per group.
#[target_feature(enable = "neon,dotprod")]
unsafe fn panel_q4_dotprod(packed: &[u8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    for (x, out) in xs.iter().zip(out.chunks_exact_mut(16)) {
        let groups = x.d.len();
        assert!(packed.len() >= groups * 256 && x.qs.len() >= groups * QK);
        let (pw, px) = (packed.as_ptr(), x.qs.as_ptr());
        let low = vdupq_n_u8(0x0f);
        panel_one(x, sw, out, |g| {
            let xv = load_q8(px.add(g * QK));
            let mut s = [vdupq_n_s32(0); 4];
            for pair in 0..4 {
                let (x0, x1) = (step_bytes(xv, 2 * pair), step_bytes(xv, 2 * pair + 1));
                for (q, sq) in s.iter_mut().enumerate() {
                    let v = vld1q_u8(pw.add(g * 256 + pair * 64 + q * 16));
                    let w0 = vreinterpretq_s8_u8(vandq_u8(v, low));
                    let w1 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
                    *sq = sdot(sdot(*sq, w0, x0), w1, x1);
                }
            }
            let off = vdupq_n_s32(x.sums[g] << 3);
            s.map(|v| vsubq_s32(v, off))
        });
    }
}
