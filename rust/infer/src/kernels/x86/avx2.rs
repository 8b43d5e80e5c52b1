//! The AVX2 path (AVX2 + FMA + F16C): row dots, float block and lane kernels, and 16-row panel
//! kernels with 8 rows per 256-bit register.

use std::arch::x86_64::*;

use super::{accumulate8, dot, f32_tile, finish, prefetch_group, remove_offset, F32Lanes};
use crate::kernels::attend::{attend_with, Group, KEY_BLOCK};
use crate::kernels::scalar::finish_lanes;
use crate::kernels::scalar::{group_q4, group_q8};
use crate::kernels::{block_tiles, inputs_in, lane_tiles, Kernels, Panels, QRow, TokenLanes, QK};

/// The AVX2 path, when this CPU has AVX2, FMA and F16C.
pub(in crate::kernels) fn avx2() -> Option<Kernels> {
    let ok = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    // SAFETY (all wrappers below): only reachable through a Kernels built after this check.
    ok.then_some(Kernels {
        name: "avx2",
        dot_f32: |w, x| unsafe { dot_f32(w, x) },
        dot_f16: |w, x| unsafe { dot_f16(w, x) },
        dot_q8: |qw, sw, x| unsafe { dot_q8_avx2(qw, sw, x) },
        dot_q4: |p, sw, x| unsafe { dot_q4_avx2(p, sw, x) },
        dot_f32_block: Some(|w, cols, x, out, stride| unsafe {
            dot_f32_block_avx2(w, cols, x, out, stride)
        }),
        dot_q8_rows: Some(|qw, sw, xs, out, stride| unsafe {
            dot_q8_rows_avx2(qw, sw, xs, out, stride)
        }),
        q8_lanes: Some(|w, sw, cols, qt, st, n, out, stride| unsafe {
            q8_lanes_block_avx2(w, sw, cols, qt, st, n, out, stride)
        }),
        widen_f16: |h, out| unsafe { widen_f16_f16c(h, out) },
        token_lanes: Some(TokenLanes {
            transpose: |x, n, cols, xt| unsafe { transpose_inputs_avx2(x, n, cols, xt) },
            block: |w, cols, xt, n, out, stride| unsafe {
                tokens_f32_block_avx2(w, cols, xt, n, out, stride)
            },
        }),
        f16_is_widened_f32: true,
        panels: Some(panels()),
        q8_in_panels: false,
        prefetch_rows: false,
        quantize_q8: crate::kernels::quant::quantize_q8_0_groups,
        silu_gate: |h, g| unsafe { silu_gate(h, g) },
        attend_f32: |g, out| unsafe { attend_avx2_f32(g, out) },
        attend_f16: |g, out| unsafe { attend_avx2_f16(g, out) },
    })
}

/// f16 → f32, 8 values per `vcvtph2ps` (F16C; a signaling NaN comes out quiet, every other value
/// exactly as [`crate::kernels::f16::widen`] gives it).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen_f16_f16c(h: &[u16], out: &mut [f32]) {
    assert_eq!(h.len(), out.len(), "one f32 per half value");
    let whole = h.len() / 8 * 8;
    for (hc, oc) in h[..whole]
        .chunks_exact(8)
        .zip(out[..whole].chunks_exact_mut(8))
    {
        let v = _mm_loadu_si128(hc.as_ptr().cast());
        _mm256_storeu_ps(oc.as_mut_ptr(), _mm256_cvtph_ps(v));
    }
    crate::kernels::f16::widen(&h[whole..], &mut out[whole..])
}

/// Horizontal sums of 8 vectors of 8 i32: lane j of the result = Σ lanes of v[j] (exact).
#[inline(always)]
unsafe fn hsum8x8(v: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    let lo = _mm256_hadd_epi32(h01, h23); // [v0..v3 low halves | v0..v3 high halves]
    let hi = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(lo, hi),
        _mm256_permute2x128_si256::<0x31>(lo, hi),
    )
}

/// i8·i8 products of one 32-value group as 8 i32 partial sums (|w| unsigned × sign-adjusted x).
#[inline(always)]
unsafe fn group_dot_avx2(w: __m256i, x: __m256i) -> __m256i {
    let aw = _mm256_sign_epi8(w, w);
    let sx = _mm256_sign_epi8(x, w);
    let p16 = _mm256_maddubs_epi16(aw, sx); // ≤ 2·128·127 fits i16
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

/// The 32 nibbles of one q4_0 group (16 packed bytes) as unsigned bytes 0..=15 in element order:
/// the bytes are broadcast to both halves and the upper half shifted right by 4.
#[inline(always)]
unsafe fn nibbles_avx2(p: *const u8) -> __m256i {
    let b = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let shifted = _mm256_srlv_epi32(b, _mm256_set_epi32(4, 4, 4, 4, 0, 0, 0, 0));
    _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f))
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_avx2(qw: &[i8], sw: &[f32], x: &QRow) -> f32 {
    let (qx, sx, groups) = (x.qs, x.d, sw.len());
    let (pw, px) = (qw.as_ptr(), qx.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut g = 0;
    while g + 8 <= groups {
        let mut v = [_mm256_setzero_si256(); 8];
        for (j, vj) in v.iter_mut().enumerate() {
            let o = (g + j) * QK;
            let w = _mm256_loadu_si256(pw.add(o) as *const __m256i);
            let x = _mm256_loadu_si256(px.add(o) as *const __m256i);
            *vj = group_dot_avx2(w, x);
        }
        acc = accumulate8(acc, hsum8x8(v), sw.as_ptr().add(g), sx.as_ptr().add(g));
        g += 8;
    }
    finish(acc, g, |g| group_q8(qw, qx, g), sw, sx)
}

/// q8_0 rows times several inputs (`Kernels::dot_q8_rows`): row by row, the inputs in tiles of
/// 4 (then 2, 1), each the bits of [`dot_q8_avx2`] for its (row, input).
///
/// A tile of T inputs loads each 32-byte weight group and takes its absolute value once for all T
/// (the sign trick's weight half), and fills one [`hsum8x8`] with `8 / T` groups × T inputs
/// instead of 8 groups of one input: lane `j * T + t` is group `g + j` of input t. Its f32 steps
/// are those of the one-input kernel lane for lane: `(s as f32) * (sw * sx)` added to the
/// accumulator of lane `g % 8` (accumulator `(g % 8) / (8 / T)`, lane `j * T + t`), groups in
/// increasing order; the lanes are then handed to [`finish_lanes`] per input, which adds the groups
/// left over (fewer than `8 / T`) and reduces the 8 lanes as every path does.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_rows_avx2(qw: &[i8], sw: &[f32], xs: &[QRow], out: &mut [f32], stride: usize) {
    let Some(first) = xs.first() else {
        return;
    };
    let (cols, groups, n) = (first.qs.len(), first.d.len(), xs.len());
    assert!(cols == groups * QK && cols > 0, "inputs of whole groups");
    assert!(
        xs.iter().all(|x| x.qs.len() == cols && x.d.len() == groups),
        "inputs of one length"
    );
    let rows = qw.len() / cols;
    assert!(
        qw.len() == rows * cols && sw.len() == rows * groups,
        "whole rows"
    );
    if rows == 0 {
        return;
    }
    assert!(
        out.len() >= (rows - 1) * stride + n && n <= stride,
        "output too short"
    );
    // Tiles of inputs, and each tile's input scales transposed (`sxt[g * T + t]`), so that the
    // scales of a hsum's groups × inputs are one load.
    let mut tiles = Vec::with_capacity(n.div_ceil(4));
    let mut t0 = 0;
    while t0 < n {
        let width = match n - t0 {
            1 => 1,
            2 | 3 => 2,
            _ => 4,
        };
        tiles.push((t0, width));
        t0 += width;
    }
    let mut sxt = vec![0f32; n * groups];
    for &(t0, width) in &tiles {
        let block = &mut sxt[t0 * groups..(t0 + width) * groups];
        for (t, x) in xs[t0..t0 + width].iter().enumerate() {
            for (g, &d) in x.d.iter().enumerate() {
                block[g * width + t] = d;
            }
        }
    }
    let po = out.as_mut_ptr();
    for r in 0..rows {
        let (w, s) = (
            &qw[r * cols..(r + 1) * cols],
            &sw[r * groups..(r + 1) * groups],
        );
        super::super::prefetch::ahead(w.as_ptr(), cols);
        super::super::prefetch::ahead(s.as_ptr(), groups * 4);
        for &(t0, width) in &tiles {
            let sx = sxt.as_ptr().add(t0 * groups);
            let xs = &xs[t0..t0 + width];
            let o = po.add(r * stride + t0);
            match width {
                4 => q8_rows_tile::<4>(w, s, xs, sx, o),
                2 => q8_rows_tile::<2>(w, s, xs, sx, o),
                _ => q8_rows_tile::<1>(w, s, xs, sx, o),
            }
        }
    }
}

/// One row times T inputs of [`dot_q8_rows_avx2`] → `out[t]`; `sxt` holds the inputs' scales
/// transposed (`sxt[g * T + t]`).
// Index loops over small fixed arrays (groups × inputs) read clearer here.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_rows_tile<const T: usize>(
    qw: &[i8],
    sw: &[f32],
    xs: &[QRow],
    sxt: *const f32,
    out: *mut f32,
) {
    // Groups per hsum.
    let span = 8 / T;
    let groups = sw.len();
    assert!(xs.len() == T && qw.len() == groups * QK);
    let px: [*const i8; T] = std::array::from_fn(|t| xs[t].qs.as_ptr());
    let (pw, ps) = (qw.as_ptr(), sw.as_ptr());
    let ones = _mm256_set1_epi16(1);
    // Lane l holds group l / T of the hsum's span: which weight scale it takes.
    let spread = _mm256_setr_epi32(
        0,
        (1 / T) as i32,
        (2 / T) as i32,
        (3 / T) as i32,
        (4 / T) as i32,
        (5 / T) as i32,
        (6 / T) as i32,
        (7 / T) as i32,
    );
    let mut acc = [_mm256_setzero_ps(); T];
    let mut g = 0;
    while g + span <= groups {
        let mut v = [_mm256_setzero_si256(); 8];
        for j in 0..span {
            let o = (g + j) * QK;
            let w = _mm256_loadu_si256(pw.add(o) as *const __m256i);
            let aw = _mm256_sign_epi8(w, w);
            for t in 0..T {
                let x = _mm256_loadu_si256(px[t].add(o) as *const __m256i);
                let p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)); // ≤ 2·128·127
                v[j * T + t] = _mm256_madd_epi16(p16, ones);
            }
        }
        let s = hsum8x8(v);
        // The weight scales of the span's groups, each repeated for the T inputs.
        let swv = match T {
            1 => _mm256_loadu_ps(ps.add(g)),
            2 => _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(ps.add(g))), spread),
            _ => {
                let two = _mm_castpd_ps(_mm_load_sd(ps.add(g) as *const f64));
                _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), spread)
            }
        };
        let d = _mm256_mul_ps(swv, _mm256_loadu_ps(sxt.add(g * T)));
        let a = &mut acc[(g % 8) / span];
        *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_cvtepi32_ps(s), d));
        g += span;
    }
    let mut stored = [[0f32; 8]; T];
    for (st, &a) in stored.iter_mut().zip(&acc) {
        _mm256_storeu_ps(st.as_mut_ptr(), a);
    }
    for t in 0..T {
        // Lane k * span + j of input t sits in accumulator k, lane j * T + t.
        let lanes: [f32; 8] = std::array::from_fn(|l| stored[l / span][(l % span) * T + t]);
        let x = &xs[t];
        *out.add(t) = finish_lanes(lanes, g, sw, x.d, |g| group_q8(qw, x.qs, g));
    }
}

/// q8_0 prefill by f32 multiply-adds with the inputs in lanes (`Kernels::q8_lanes`): tiles of up
/// to 6 rows × one lane vector (16 inputs, two `__m256`). Per group a tile sums its 32 columns
/// exactly (integers, see `Kernels::q8_lanes`), then per row and input adds
/// `s * (sw * sx)` to lane `g % 8` of that product's 8 lanes (kept in a stack buffer) and at
/// the end combines the lanes as [`crate::kernels::reduce8`] does: `dot_q8`'s bits.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_lanes_block_avx2(
    w: &[f32],
    sw: &[f32],
    cols: usize,
    qt: &[f32],
    st: &[f32],
    n: usize,
    out: &mut [f32],
    stride: usize,
) {
    let (rows, groups, vectors) = (w.len() / cols, cols / QK, n.div_ceil(16));
    if rows == 0 || n == 0 {
        return;
    }
    assert!(cols == groups * QK && w.len() == rows * cols && sw.len() == rows * groups);
    assert!(qt.len() >= vectors * cols * 16 && st.len() >= vectors * groups * 16);
    assert!(
        out.len() >= (rows - 1) * stride + n && n <= stride,
        "output too short"
    );
    for v in 0..vectors {
        let x = qt.as_ptr().add(v * cols * 16);
        let sx = st.as_ptr().add(v * groups * 16);
        let inputs = inputs_in(n, v);
        for r0 in (0..rows).step_by(6) {
            let at = (
                w.as_ptr().add(r0 * cols),
                sw.as_ptr().add(r0 * groups),
                cols,
                x,
                sx,
            );
            let o = out.as_mut_ptr().add(r0 * stride + 16 * v);
            // A lane vector of at most 8 inputs needs only its first half.
            match (rows - r0, inputs > 8) {
                (1, true) => q8_lanes_tile::<1, 2>(at, o, stride, inputs),
                (2, true) => q8_lanes_tile::<2, 2>(at, o, stride, inputs),
                (3, true) => q8_lanes_tile::<3, 2>(at, o, stride, inputs),
                (4, true) => q8_lanes_tile::<4, 2>(at, o, stride, inputs),
                (5, true) => q8_lanes_tile::<5, 2>(at, o, stride, inputs),
                (_, true) => q8_lanes_tile::<6, 2>(at, o, stride, inputs),
                (1, false) => q8_lanes_tile::<1, 1>(at, o, stride, inputs),
                (2, false) => q8_lanes_tile::<2, 1>(at, o, stride, inputs),
                (3, false) => q8_lanes_tile::<3, 1>(at, o, stride, inputs),
                (4, false) => q8_lanes_tile::<4, 1>(at, o, stride, inputs),
                (5, false) => q8_lanes_tile::<5, 1>(at, o, stride, inputs),
                (_, false) => q8_lanes_tile::<6, 1>(at, o, stride, inputs),
            }
        }
    }
}

/// R rows × one lane vector of [`q8_lanes_block_avx2`] (its first H halves of 8 inputs): (rows,
/// their scales, cols, inputs in lanes, input scales in lanes) → the first `inputs` results of
/// each row at `out + r * stride`.
// Index loops over small fixed arrays (rows × halves × lanes) read clearer here.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_lanes_tile<const R: usize, const H: usize>(
    (w, sw, cols, x, sx): (*const f32, *const f32, usize, *const f32, *const f32),
    out: *mut f32,
    stride: usize,
    inputs: usize,
) {
    let groups = cols / QK;
    // lanes[r][lane][half]: the 8 lane sums of row r for the 16 inputs.
    let mut lanes = [[[_mm256_setzero_ps(); H]; 8]; R];
    for g in 0..groups {
        let mut s = [[_mm256_setzero_ps(); H]; R];
        for c in g * QK..(g + 1) * QK {
            let xv: [__m256; H] = std::array::from_fn(|h| _mm256_load_ps(x.add(c * 16 + 8 * h)));
            for (r, sr) in s.iter_mut().enumerate() {
                let wr = _mm256_broadcast_ss(&*w.add(r * cols + c));
                for (sh, &xh) in sr.iter_mut().zip(&xv) {
                    *sh = _mm256_fmadd_ps(xh, wr, *sh);
                }
            }
        }
        let sxv: [__m256; H] = std::array::from_fn(|h| _mm256_loadu_ps(sx.add(g * 16 + 8 * h)));
        for (r, (sr, lr)) in s.iter().zip(lanes.iter_mut()).enumerate() {
            let wr = _mm256_broadcast_ss(&*sw.add(r * groups + g));
            for h in 0..H {
                let d = _mm256_mul_ps(wr, sxv[h]);
                let l = &mut lr[g % 8][h];
                *l = _mm256_add_ps(*l, _mm256_mul_ps(sr[h], d));
            }
        }
    }
    for (r, a) in lanes.iter().enumerate() {
        let mut res = [0f32; 16];
        for h in 0..H {
            // ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)), as reduce8.
            let v = _mm256_add_ps(
                _mm256_add_ps(
                    _mm256_add_ps(a[0][h], a[4][h]),
                    _mm256_add_ps(a[2][h], a[6][h]),
                ),
                _mm256_add_ps(
                    _mm256_add_ps(a[1][h], a[5][h]),
                    _mm256_add_ps(a[3][h], a[7][h]),
                ),
            );
            _mm256_storeu_ps(res.as_mut_ptr().add(8 * h), v);
        }
        std::ptr::copy_nonoverlapping(res.as_ptr(), out.add(r * stride), inputs);
    }
}

/// q4_0: unsigned nibbles (0..=15) times signed activations with one maddubs, minus 8·Σx per group.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_avx2(p: &[u8], sw: &[f32], x: &QRow) -> f32 {
    let (qx, sx, groups) = (x.qs, x.d, sw.len());
    let (pp, px) = (p.as_ptr(), qx.as_ptr());
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut g = 0;
    while g + 8 <= groups {
        let mut v = [_mm256_setzero_si256(); 8];
        for (j, vj) in v.iter_mut().enumerate() {
            let w = nibbles_avx2(pp.add((g + j) * QK / 2));
            let x = _mm256_loadu_si256(px.add((g + j) * QK) as *const __m256i);
            *vj = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones); // ≤ 2·15·127 fits i16
        }
        let s = remove_offset::<3>(hsum8x8(v), x.sums.as_ptr().add(g));
        acc = accumulate8(acc, s, sw.as_ptr().add(g), sx.as_ptr().add(g));
        g += 8;
    }
    finish(acc, g, |g| group_q4(p, qx, g), sw, sx)
}

#[inline(always)]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

impl F32Lanes for __m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sum(v: Self) -> f32 {
        hsum_ps(v)
    }
    #[inline(always)]
    unsafe fn sum_each(v: &[Self], sums: &mut [f32]) {
        let v: [__m256; 8] = v.try_into().expect("8 vectors");
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), hsum_ps_8(v));
        for (p, &l) in lanes.iter().enumerate() {
            // Lane 4b + j holds vector 2j + b.
            sums[2 * (p % 4) + p / 4] = l;
        }
    }
}

/// f32 dot: [`dot`] on 256-bit vectors (4 chains of 8 lanes).
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let pw = w.as_ptr();
    dot::<__m256>(w.len(), |i| _mm256_loadu_ps(pw.add(i)), |j| w[j], x)
}

/// f16 weights (F16C conversion, 8 per instruction) · f32 activations: [`dot`] on 256-bit vectors.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(w: &[u16], x: &[f32]) -> f32 {
    let pw = w.as_ptr();
    dot::<__m256>(
        w.len(),
        |i| _mm256_cvtph_ps(_mm_loadu_si128(pw.add(i) as *const __m128i)),
        |j| crate::kernels::f16_to_f32(w[j]),
        x,
    )
}

/// One tile of [`dot_f32_block_avx2`]: [`f32_tile`] on 256-bit vectors.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn f32_tile_avx2<const R: usize, const T: usize>(
    w: *const f32,
    x: *const f32,
    cols: usize,
    out: *mut f32,
    stride: usize,
) -> usize {
    f32_tile::<__m256, R, T>(w, x, cols, out, stride)
}

/// Every row of `w` (`cols` values each) · every input of `x` → `out[i * stride + t]`, each product
/// exactly as [`dot_f32`] computes it ([`f32_tile`]). Tiles of 2 rows × 4 inputs
/// share their loads (6 loads per 8 FMAs; a single dot needs 2 per FMA) within AVX2's 16 registers.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_block_avx2(w: &[f32], cols: usize, x: &[f32], out: &mut [f32], stride: usize) {
    let sizes = (w.len(), cols, x.len(), out.len(), stride);
    let (pw, px, po) = (w.as_ptr(), x.as_ptr(), out.as_mut_ptr());
    block_tiles(sizes, 2, |r, t, whole, left| {
        let (w0, x0, o) = (pw.add(r * cols), px.add(t * cols), po.add(r * stride + t));
        match (whole, left) {
            (true, 4..) => f32_tile_avx2::<2, 4>(w0, x0, cols, o, stride),
            (true, 3) => f32_tile_avx2::<2, 3>(w0, x0, cols, o, stride),
            (true, 2) => f32_tile_avx2::<2, 2>(w0, x0, cols, o, stride),
            (true, _) => f32_tile_avx2::<2, 1>(w0, x0, cols, o, stride),
            (false, 4..) => f32_tile_avx2::<1, 4>(w0, x0, cols, o, stride),
            (false, _) => f32_tile_avx2::<1, 1>(w0, x0, cols, o, stride),
        }
    });
}

/// [`tokens_f32_block_avx512`] within AVX2's 16 registers: a lane vector of 16 inputs is two
/// `__m256`, tiles are 6 rows × 16 inputs (12 sums; per column 2 loads and 6 broadcasts for 12
/// FMAs, where [`dot_f32_block_avx2`] needs 6 loads for 8), the same FMA chain per result.
#[target_feature(enable = "avx2,fma")]
unsafe fn tokens_f32_block_avx2(
    w: &[f32],
    cols: usize,
    xt: &[f32],
    n: usize,
    out: &mut [f32],
    stride: usize,
) {
    assert!(xt.as_ptr().align_offset(32) == 0);
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
            6 => token_tile_avx2::<6>(at, t.k),
            5 => token_tile_avx2::<5>(at, t.k),
            4 => token_tile_avx2::<4>(at, t.k),
            3 => token_tile_avx2::<3>(at, t.k),
            2 => token_tile_avx2::<2>(at, t.k),
            _ => token_tile_avx2::<1>(at, t.k),
        }
    });
}

/// R rows × one lane vector of [`tokens_f32_block_avx2`] over columns `k`: (rows, cols, inputs,
/// out, stride, real inputs in the vector); the sums continue from `out` after the first pass.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn token_tile_avx2<const R: usize>(
    (w, cols, x, out, stride, inputs): (*const f32, usize, *const f32, *mut f32, usize, usize),
    k: std::ops::Range<usize>,
) {
    // Lanes holding inputs, in the two halves of the lane vector.
    let left = _mm256_set1_epi32(inputs as i32);
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let masks = [
        _mm256_cmpgt_epi32(left, lane),
        _mm256_cmpgt_epi32(left, _mm256_add_epi32(lane, _mm256_set1_epi32(8))),
    ];
    // A whole lane vector (every vector but a last partial one) moves with plain loads and
    // stores: the masked forms are microcoded on some cores (AMD Zen) and cost as much as many
    // multiply-adds. Either way the same values are read and written.
    let whole = inputs == 16;
    let mut a = [[_mm256_setzero_ps(); 2]; R];
    if k.start > 0 {
        for (r, ar) in a.iter_mut().enumerate() {
            for (h, ah) in ar.iter_mut().enumerate() {
                let p = out.add(r * stride + 8 * h);
                *ah = if whole {
                    _mm256_loadu_ps(p)
                } else {
                    _mm256_maskload_ps(p, masks[h])
                };
            }
        }
    }
    for c in k {
        let xv = [
            _mm256_load_ps(x.add(c * 16)),
            _mm256_load_ps(x.add(c * 16 + 8)),
        ];
        for (r, ar) in a.iter_mut().enumerate() {
            let wr = _mm256_broadcast_ss(&*w.add(r * cols + c));
            for (ah, &xh) in ar.iter_mut().zip(&xv) {
                *ah = _mm256_fmadd_ps(xh, wr, *ah);
            }
        }
    }
    for (r, ar) in a.iter().enumerate() {
        for (h, &ah) in ar.iter().enumerate() {
            let p = out.add(r * stride + 8 * h);
            if whole {
                _mm256_storeu_ps(p, ah);
            } else {
                _mm256_maskstore_ps(p, masks[h], ah);
            }
        }
    }
}

/// [`transpose_inputs_avx512`] with AVX2 gathers (8 lanes each).
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_inputs_avx2(x: &[f32], n: usize, cols: usize, xt: &mut [f32]) {
    let vectors = n.div_ceil(16);
    assert!(x.len() >= n * cols && xt.len() >= vectors * 16 * cols);
    assert!(16 * cols <= i32::MAX as usize / 4, "gather offsets are i32");
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let offsets = _mm256_mullo_epi32(lane, _mm256_set1_epi32(cols as i32));
    for (v, block) in xt.chunks_exact_mut(16 * cols).take(vectors).enumerate() {
        let left = (n - 16 * v).min(16) as i32;
        for (h, half) in [0, 8].into_iter().enumerate() {
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left - half), lane);
            let base = x.as_ptr().add((16 * v + 8 * h).min(n - 1) * cols);
            for (k, lanes) in block.chunks_exact_mut(16).enumerate() {
                let g = _mm256_mask_i32gather_ps::<4>(
                    _mm256_setzero_ps(),
                    base.add(k),
                    offsets,
                    _mm256_castsi256_ps(mask),
                );
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8 * h), g);
            }
        }
    }
}

/// [`hsum_ps`] of 8 vectors at once: lane 4b + j of the result is the sum of vector 2j + b, by the
/// same additions (lanes i + (i+4), then + (i+2), then + (i+1)).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_ps_8(v: [__m256; 8]) -> __m256 {
    // 128-bit halves: [A lo + A hi | B lo + B hi] for pairs (A, B).
    let b: [__m256; 4] = std::array::from_fn(|j| {
        let (a, b) = (v[2 * j], v[2 * j + 1]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        )
    });
    // Lanes (0 + 2, 1 + 3) of two vectors side by side, within each half.
    let c: [__m256; 2] = std::array::from_fn(|i| {
        let (p, q) = (b[2 * i], b[2 * i + 1]);
        _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(p, q),
            _mm256_shuffle_ps::<0xEE>(p, q),
        )
    });
    _mm256_add_ps(
        _mm256_shuffle_ps::<0x88>(c[0], c[1]),
        _mm256_shuffle_ps::<0xDD>(c[0], c[1]),
    )
}

/// The 16-row panel kernels of the AVX2 path (see [`crate::kernels::panel`]): 8 rows per 256-bit
/// register.
fn panels() -> Panels {
    // SAFETY (wrappers): only reachable through the Kernels that [`avx2`] builds after its checks.
    Panels {
        dot_q8: |qw, sw, xs, out| unsafe { panel_q8_avx2(qw, sw, xs, out) },
        dot_q4: |p, sw, xs, out| unsafe { panel_q4_avx2(p, sw, xs, out) },
        prefetch_one: true,
        pairs: false,
    }
}

/// One panel times T inputs on AVX2, one half (8 rows, one 256-bit register) at a time so the 8 lane
/// accumulators of a half fit the 16 registers: `sums(g, h)` gives group g's exact integer dots of
/// half h for each input; lane accumulator g % 8, then [`reduce8`].
// Index loops over small fixed arrays (inputs × lanes) read clearer here.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_tile_avx2<const T: usize, const GROUP_BYTES: usize>(
    w: *const u8,
    xs: &[QRow],
    sw: &[f32],
    out: &mut [f32],
    sums: impl Fn(usize, usize) -> [__m256i; T],
) {
    let groups = xs[0].d.len();
    assert!(xs.len() == T && out.len() >= 16 * T && sw.len() >= 16 * groups);
    let ps = sw.as_ptr();
    for h in 0..2 {
        let mut acc = [[_mm256_setzero_ps(); 8]; T];
        for g in 0..groups {
            if h == 0 {
                prefetch_group::<T, GROUP_BYTES>(w, ps, g);
            }
            let s = sums(g, h);
            let w = _mm256_loadu_ps(ps.add(g * 16 + h * 8));
            for t in 0..T {
                let d = _mm256_mul_ps(w, _mm256_set1_ps(xs[t].d[g]));
                let a = &mut acc[t][g % 8];
                *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_cvtepi32_ps(s[t]), d));
            }
        }
        for (t, a) in acc.iter().enumerate() {
            // reduce8 of every row: ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)).
            let r = _mm256_add_ps(
                _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6])),
                _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7])),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(16 * t + 8 * h), r);
        }
    }
}

/// 4 activation bytes (columns c..c+4) broadcast to all 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn broadcast4_avx2(x: &QRow, c: usize) -> __m256i {
    _mm256_set1_epi32((x.qs.as_ptr().add(c) as *const i32).read_unaligned())
}

/// q8_0 panel on AVX2: |w| (unsigned) · sign-adjusted broadcast activations with `vpmaddubsw`
/// (≤ 2·128·127, no saturation), pairs summed by `vpmaddwd`: one i32 per row and step.
// Index loops over small fixed arrays (inputs × register halves) read clearer here.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_q8_tile_avx2<const T: usize>(qs: &[i8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    let groups = xs[0].d.len();
    assert!(qs.len() >= groups * 512 && xs.iter().all(|x| x.qs.len() >= groups * QK));
    let pw = qs.as_ptr();
    let ones = _mm256_set1_epi16(1);
    panel_tile_avx2::<T, 512>(pw as *const u8, xs, sw, out, |g, h| {
        let mut s = [_mm256_setzero_si256(); T];
        for st in 0..8 {
            let w = _mm256_loadu_si256(pw.add(g * 512 + st * 64 + h * 32) as *const __m256i);
            let aw = _mm256_sign_epi8(w, w);
            for t in 0..T {
                let x = _mm256_sign_epi8(broadcast4_avx2(&xs[t], g * QK + st * 4), w);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, x), ones);
                s[t] = _mm256_add_epi32(s[t], p);
            }
        }
        s
    })
}

/// q4_0 panel on AVX2: unsigned nibbles (0..=15) · broadcast activations, minus 8·Σx per group.
// Index loops over small fixed arrays (inputs × register halves) read clearer here.
#[allow(clippy::needless_range_loop)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_q4_tile_avx2<const T: usize>(
    packed: &[u8],
    sw: &[f32],
    xs: &[QRow],
    out: &mut [f32],
) {
    let groups = xs[0].d.len();
    assert!(packed.len() >= groups * 256 && xs.iter().all(|x| x.qs.len() >= groups * QK));
    let pw = packed.as_ptr();
    let (ones, low) = (_mm256_set1_epi16(1), _mm256_set1_epi8(0x0f));
    panel_tile_avx2::<T, 256>(pw, xs, sw, out, |g, h| {
        let mut s = [_mm256_setzero_si256(); T];
        for pair in 0..4 {
            let v = _mm256_loadu_si256(pw.add(g * 256 + pair * 64 + h * 32) as *const __m256i);
            let w0 = _mm256_and_si256(v, low);
            let w1 = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low);
            for t in 0..T {
                let c = g * QK + pair * 8;
                let p0 = _mm256_maddubs_epi16(w0, broadcast4_avx2(&xs[t], c));
                let p1 = _mm256_maddubs_epi16(w1, broadcast4_avx2(&xs[t], c + 4));
                // p0 + p1 ≤ 4·15·127 fits i16.
                let p = _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones);
                s[t] = _mm256_add_epi32(s[t], p);
            }
        }
        for t in 0..T {
            s[t] = _mm256_sub_epi32(s[t], _mm256_set1_epi32(xs[t].sums[g] << 3));
        }
        s
    })
}

#[target_feature(enable = "avx2,fma")]
unsafe fn panel_q8_avx2(qs: &[i8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    for (xs, out) in xs.chunks(4).zip(out.chunks_mut(4 * 16)) {
        match xs.len() {
            1 => panel_q8_tile_avx2::<1>(qs, sw, xs, out),
            2 => panel_q8_tile_avx2::<2>(qs, sw, xs, out),
            3 => panel_q8_tile_avx2::<3>(qs, sw, xs, out),
            _ => panel_q8_tile_avx2::<4>(qs, sw, xs, out),
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn panel_q4_avx2(packed: &[u8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    for (xs, out) in xs.chunks(4).zip(out.chunks_mut(4 * 16)) {
        match xs.len() {
            1 => panel_q4_tile_avx2::<1>(packed, sw, xs, out),
            2 => panel_q4_tile_avx2::<2>(packed, sw, xs, out),
            3 => panel_q4_tile_avx2::<3>(packed, sw, xs, out),
            _ => panel_q4_tile_avx2::<4>(packed, sw, xs, out),
        }
    }
}

// Attention (see `kernels::attend`): the same operations in the same order as the plain
// source. Each takes the path's load (`load(i)`: the vector of f32 from element i on, widened
// from half values for an f16 cache; exact either way).

#[target_feature(enable = "avx2")]
pub(in crate::kernels) unsafe fn attend_avx2_f32(g: &Group<f32>, out: &mut [f32]) {
    attend_with(
        g,
        out,
        |q, kb, scale, s| unsafe {
            score_block_avx2(q, kb.len(), scale, s, |i| {
                _mm256_loadu_ps(kb.as_ptr().add(i))
            })
        },
        |w, v, hd, o| unsafe {
            weighted_sum_2_avx2(w, v.len(), hd, o, |i| _mm256_loadu_ps(v.as_ptr().add(i)))
        },
    )
}

#[target_feature(enable = "avx2,f16c")]
pub(in crate::kernels) unsafe fn attend_avx2_f16(g: &Group<u16>, out: &mut [f32]) {
    let wide = |p: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(p.cast()));
    attend_with(
        g,
        out,
        |q, kb, scale, s| unsafe {
            score_block_avx2(q, kb.len(), scale, s, |i| wide(kb.as_ptr().add(i)))
        },
        |w, v, hd, o| unsafe {
            weighted_sum_2_avx2(w, v.len(), hd, o, |i| wide(v.as_ptr().add(i)))
        },
    )
}

/// One block's 16 scores in two halves of 8 keys, one vector per lane of the dot product in each
/// (`kb_len` elements of keys from `load`'s base).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn score_block_avx2(
    qh: &[f32],
    kb_len: usize,
    scale: f32,
    s: &mut [f32; KEY_BLOCK],
    load: impl Fn(usize) -> __m256,
) {
    let hd = qh.len();
    assert!(kb_len >= hd * KEY_BLOCK);
    let pq = qh.as_ptr();
    let full = hd / 8 * 8;
    for half in [0, 8] {
        let term = |d: usize| _mm256_mul_ps(_mm256_set1_ps(*pq.add(d)), load(d * KEY_BLOCK + half));
        let mut acc = [_mm256_setzero_ps(); 8];
        for d in (0..full).step_by(8) {
            for (l, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, term(d + l));
            }
        }
        let mut tail = _mm256_setzero_ps();
        for d in full..hd {
            tail = _mm256_add_ps(tail, term(d));
        }
        let sum = acc[1..].iter().fold(acc[0], |t, &a| _mm256_add_ps(t, a));
        let r = _mm256_mul_ps(_mm256_add_ps(sum, tail), _mm256_set1_ps(scale));
        _mm256_storeu_ps(s.as_mut_ptr().add(half), r);
    }
}

/// Two heads' weighted sums, 16 dimensions at a time.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn weighted_sum_2_avx2(
    w: [&[f32]; 2],
    v_len: usize,
    hd: usize,
    o: [&mut [f32]; 2],
    load: impl Fn(usize) -> __m256,
) -> usize {
    let n = w[0].len();
    assert!(w[1].len() == n && v_len >= n * hd && o[0].len() >= hd && o[1].len() >= hd);
    let pw = w.map(|w| w.as_ptr());
    let po = o.map(|o| o.as_mut_ptr());
    let mut c = 0;
    while c + 16 <= hd {
        let mut a = [_mm256_setzero_ps(); 4];
        for k in 0..n {
            let (v0, v1) = (load(k * hd + c), load(k * hd + c + 8));
            let (w0, w1) = (_mm256_set1_ps(*pw[0].add(k)), _mm256_set1_ps(*pw[1].add(k)));
            a[0] = _mm256_add_ps(a[0], _mm256_mul_ps(w0, v0));
            a[1] = _mm256_add_ps(a[1], _mm256_mul_ps(w0, v1));
            a[2] = _mm256_add_ps(a[2], _mm256_mul_ps(w1, v0));
            a[3] = _mm256_add_ps(a[3], _mm256_mul_ps(w1, v1));
        }
        _mm256_storeu_ps(po[0].add(c), a[0]);
        _mm256_storeu_ps(po[0].add(c + 8), a[1]);
        _mm256_storeu_ps(po[1].add(c), a[2]);
        _mm256_storeu_ps(po[1].add(c + 8), a[3]);
        c += 16;
    }
    c
}

/// [`crate::kernels::math::silu_gate_plain`] compiled for 8-wide vectors (the same bits: Rust
/// never fuses multiplies and adds).
#[target_feature(enable = "avx2")]
pub(in crate::kernels) unsafe fn silu_gate(h: &mut [f32], g: &[f32]) {
    crate::kernels::math::silu_gate_plain(h, g)
}
