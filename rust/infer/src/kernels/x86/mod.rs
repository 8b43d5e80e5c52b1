//! x86-64 kernels, one file per instruction set: [`avx2`] (AVX2 + FMA + F16C) and [`avx512`]
//! (AVX-512 with VNNI for the integer dots; it also uses AVX2 instructions).
//!
//! The q8_0 / q4_0 kernels reproduce [`super::scalar::dot_q8`] bit for bit: each group's integer dot
//! is summed exactly in i32, converted to f32, multiplied by `sw * sx`, and added to lane `g % 8` of an
//! 8-lane f32 accumulator (one `__m256` holds lanes 0..8 for groups 8i..8i+8), then
//! [`super::reduce8`]. The float kernels use FMA and their own summation order (within 1e-5 relative
//! of scalar): both paths run one body for their row dots and block tiles ([`dot`], [`f32_tile`]),
//! over their own vector width ([`F32Lanes`]). The helpers here are shared by both files.

mod avx2;
mod avx512;

pub(super) use avx2::avx2;
pub(super) use avx512::avx512vnni;

use std::arch::x86_64::*;

use super::scalar::{finish_lanes, finish_tile};

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

/// A vector of f32 lanes of one x86 instruction set (AVX2: `__m256`, 8 lanes; AVX-512: `__m512`,
/// 16): the operations the float row dots and their block tiles need, so that one body ([`dot`],
/// [`f32_tile`]) serves both widths. Implementations are `#[inline(always)]`, so they compile into
/// the `#[target_feature]` function of their path that calls the generic body.
pub(super) trait F32Lanes: Copy {
    /// Lanes per vector.
    const LANES: usize;
    unsafe fn zero() -> Self;
    /// LANES values from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self;
    /// `a * b + c`, rounded once.
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    /// The sum of the lanes, in the path's fixed order.
    unsafe fn sum(v: Self) -> f32;
    /// `sums[i] = sum(v[i])` for LANES vectors at once, by the same additions.
    unsafe fn sum_each(v: &[Self], sums: &mut [f32]);
}

/// Σ w·x with 4 independent FMA chains (4 × LANES values per step), then the LANES-wide rest into
/// chain 0, `(a0 + a1) + (a2 + a3)`, [`F32Lanes::sum`], and a scalar tail in order; `load_w(i)`
/// gives weights i..i + LANES as f32, `w_at(j)` weight j.
#[inline(always)]
pub(super) unsafe fn dot<L: F32Lanes>(
    n: usize,
    load_w: impl Fn(usize) -> L,
    w_at: impl Fn(usize) -> f32,
    x: &[f32],
) -> f32 {
    let n = n.min(x.len());
    let px = x.as_ptr();
    let mut a = [L::zero(); 4];
    let mut i = 0;
    while i + 4 * L::LANES <= n {
        for (k, ak) in a.iter_mut().enumerate() {
            let o = i + L::LANES * k;
            *ak = L::fmadd(load_w(o), L::load(px.add(o)), *ak);
        }
        i += 4 * L::LANES;
    }
    while i + L::LANES <= n {
        a[0] = L::fmadd(load_w(i), L::load(px.add(i)), a[0]);
        i += L::LANES;
    }
    let mut t = L::sum(L::add(L::add(a[0], a[1]), L::add(a[2], a[3])));
    for (j, &xj) in (i..n).zip(&x[i..n]) {
        t += w_at(j) * xj;
    }
    t
}

/// One tile of a path's `dot_f32_block`: R rows from `w` and T inputs from `x` (consecutive, `cols`
/// apart) → `out[r * stride + t]`, each product exactly as [`dot`] computes it (its 4 chains, the
/// rest into chain 0, `(c0 + c1) + (c2 + c3)`, the lane sum, the scalar tail); returns T. The
/// chains are run one after another (R × T accumulators each, in registers) rather than side by
/// side, which would need 4 × R × T. A tile of exactly LANES products sums them all at once
/// ([`F32Lanes::sum_each`]).
#[inline(always)]
pub(super) unsafe fn f32_tile<L: F32Lanes, const R: usize, const T: usize>(
    w: *const f32,
    x: *const f32,
    cols: usize,
    out: *mut f32,
    stride: usize,
) -> usize {
    let main = cols / (4 * L::LANES) * (4 * L::LANES);
    let rest = cols / L::LANES * L::LANES;
    let s01 = add_tiles(
        chain::<L, R, T>((w, x, cols), 0, main, rest),
        chain::<L, R, T>((w, x, cols), 1, main, main),
    );
    let s23 = add_tiles(
        chain::<L, R, T>((w, x, cols), 2, main, main),
        chain::<L, R, T>((w, x, cols), 3, main, main),
    );
    let s = add_tiles(s01, s23);
    let mut sums = [[0f32; T]; R];
    if R * T == L::LANES {
        let mut v = [L::zero(); 16];
        for (p, vp) in v.iter_mut().enumerate().take(R * T) {
            *vp = s[p / T][p % T];
        }
        let mut each = [0f32; 16];
        L::sum_each(&v[..R * T], &mut each[..R * T]);
        for (p, &e) in each.iter().enumerate().take(R * T) {
            sums[p / T][p % T] = e;
        }
    } else {
        for (sr, vr) in sums.iter_mut().zip(&s) {
            for (st, &v) in sr.iter_mut().zip(vr) {
                *st = L::sum(v);
            }
        }
    }
    finish_tile(sums, (w, x, cols, rest), out, stride);
    T
}

/// Chain c of an [`f32_tile`]: columns `LANES·c..` of every 4·LANES-wide step below `main`, then the
/// LANES-wide steps `main..rest` (chain 0 takes the rest; the others pass `rest = main`).
#[inline(always)]
unsafe fn chain<L: F32Lanes, const R: usize, const T: usize>(
    (w, x, cols): (*const f32, *const f32, usize),
    c: usize,
    main: usize,
    rest: usize,
) -> [[L; T]; R] {
    let mut a = [[L::zero(); T]; R];
    for i in (L::LANES * c..main).step_by(4 * L::LANES) {
        step(&mut a, (w, x, cols), i);
    }
    for i in (main..rest).step_by(L::LANES) {
        step(&mut a, (w, x, cols), i);
    }
    a
}

/// Columns `i..i + LANES` of every row and input of a tile, into its accumulators.
#[inline(always)]
unsafe fn step<L: F32Lanes, const R: usize, const T: usize>(
    a: &mut [[L; T]; R],
    (w, x, cols): (*const f32, *const f32, usize),
    i: usize,
) {
    let mut xv = [L::zero(); T];
    for (t, xt) in xv.iter_mut().enumerate() {
        *xt = L::load(x.add(t * cols + i));
    }
    for (r, ar) in a.iter_mut().enumerate() {
        let wv = L::load(w.add(r * cols + i));
        for (at, &xt) in ar.iter_mut().zip(&xv) {
            *at = L::fmadd(wv, xt, *at);
        }
    }
}

/// `a + b`, vector by vector.
#[inline(always)]
unsafe fn add_tiles<L: F32Lanes, const R: usize, const T: usize>(
    a: [[L; T]; R],
    b: [[L; T]; R],
) -> [[L; T]; R] {
    let mut s = a;
    for (sr, br) in s.iter_mut().zip(&b) {
        for (st, &bt) in sr.iter_mut().zip(br) {
            *st = L::add(*st, bt);
        }
    }
    s
}
