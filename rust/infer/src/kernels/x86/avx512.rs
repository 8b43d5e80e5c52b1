//! The AVX-512 VNNI path: VNNI integer dots and 16-wide float dots, and 16-row panel kernels with
//! one panel per 512-bit register.

use std::arch::x86_64::*;

use super::avx2::{avx2, silu_gate};
use super::{accumulate8, dot, finish, prefetch_group, remove_offset, F32Lanes};
use crate::kernels::attend::{attend_with, Group, KEY_BLOCK};
use crate::kernels::scalar::{group_q4, group_q8};
use crate::kernels::{block_tiles, inputs_in, lane_tiles, Kernels, Panels, QRow, TokenLanes, QK};

/// The AVX-512 VNNI path: VNNI integer dots and 16-wide float dots (decode is bandwidth-bound either
/// way, but prefill multiplies each weight row with many inputs and is compute-bound).
pub(in crate::kernels) fn avx512vnni() -> Option<Kernels> {
    // The AVX2 checks too: the kernels below also use AVX2, FMA and F16C instructions.
    avx2()?;
    let ok = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni");
    // SAFETY (wrappers): only reachable through a Kernels built after this check.
    ok.then_some(Kernels {
        name: "avx512vnni",
        dot_f32: |w, x| unsafe { dot_f32_avx512(w, x) },
        dot_f16: |w, x| unsafe { dot_f16_avx512(w, x) },
        dot_q8: |qw, sw, x| unsafe { dot_q8_vnni(qw, sw, x) },
        dot_q4: |p, sw, x| unsafe { dot_q4_vnni(p, sw, x) },
        dot_f32_block: Some(|w, cols, x, out, stride| unsafe {
            dot_f32_block_avx512(w, cols, x, out, stride)
        }),
        dot_q8_rows: None,
        q8_lanes: None,
        widen_f16: |h, out| unsafe { widen_f16_avx512(h, out) },
        token_lanes: Some(TokenLanes {
            transpose: |x, n, cols, xt| unsafe { transpose_inputs_avx512(x, n, cols, xt) },
            block: |w, cols, xt, n, out, stride| unsafe {
                tokens_f32_block_avx512(w, cols, xt, n, out, stride)
            },
        }),
        f16_is_widened_f32: true,
        panels: Some(panels()),
        q8_in_panels: true,
        prefetch_rows: true,
        quantize_q8: |v, qs, scales| unsafe { quantize_q8_0(v, qs, scales) },
        silu_gate: |h, g| unsafe { silu_gate(h, g) },
        attend_f32: |g, out| unsafe { attend_avx512_f32(g, out) },
        attend_f16: |g, out| unsafe { attend_avx512_f16(g, out) },
    })
}

/// f16 → f32, 16 values per `vcvtph2ps` (as the AVX2 path's F16C widening; prefill widens every f16
/// weight once per call).
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn widen_f16_avx512(h: &[u16], out: &mut [f32]) {
    assert_eq!(h.len(), out.len(), "one f32 per half value");
    let whole = h.len() / 16 * 16;
    for (hc, oc) in h[..whole]
        .chunks_exact(16)
        .zip(out[..whole].chunks_exact_mut(16))
    {
        let v = _mm256_loadu_si256(hc.as_ptr().cast());
        _mm512_storeu_ps(oc.as_mut_ptr(), _mm512_cvtph_ps(v));
    }
    crate::kernels::f16::widen(&h[whole..], &mut out[whole..])
}

impl F32Lanes for __m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sum(v: Self) -> f32 {
        _mm512_reduce_add_ps(v)
    }
    #[inline(always)]
    unsafe fn sum_each(v: &[Self], sums: &mut [f32]) {
        let v: [__m512; 16] = v.try_into().expect("16 vectors");
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), reduce_add_16(v));
        for (p, &l) in lanes.iter().enumerate() {
            // Lane 4j + b holds vector 4b + j.
            sums[4 * (p % 4) + p / 4] = l;
        }
    }
}

/// f32 dot: [`dot`] on 512-bit vectors (4 chains of 16 lanes).
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn dot_f32_avx512(w: &[f32], x: &[f32]) -> f32 {
    let pw = w.as_ptr();
    dot::<__m512>(w.len(), |i| _mm512_loadu_ps(pw.add(i)), |j| w[j], x)
}

/// Every row of `w` (`cols` values each) · every input of `x` → `out[i * stride + t]`, each product
/// exactly as [`dot_f32_avx512`] computes it ([`super::f32_tile`]). Tiles of 4 rows × 4 inputs
/// share their loads (8 loads per 16 FMAs; a single dot needs 2 per FMA).
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn dot_f32_block_avx512(w: &[f32], cols: usize, x: &[f32], out: &mut [f32], stride: usize) {
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

/// One tile of [`dot_f32_block_avx512`]: [`super::f32_tile`] on 512-bit vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn f32_tile<const R: usize, const T: usize>(
    w: *const f32,
    x: *const f32,
    cols: usize,
    out: *mut f32,
    stride: usize,
) -> usize {
    super::f32_tile::<__m512, R, T>(w, x, cols, out, stride)
}

/// Every row of `w` (`cols` values each) · every input → `out[i * stride + t]` for t < n, with the
/// inputs in vector lanes: `xt[(v * cols + k) * 16 + l]` is column k of input 16v + l (see
/// [`transpose_inputs_avx512`]). Each result is one chain of fused multiply-adds in column order
/// (the definition in [`crate::kernels::tokens_f32_reference`]); no horizontal sums. Tiles of 6 rows × 4
/// lane vectors (64 inputs) keep 24 sums in registers; each step loads 4 vectors of inputs and
/// broadcasts 6 weights for 24 FMAs, where the row-dot tiles need 8 loads for 16.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn tokens_f32_block_avx512(
    w: &[f32],
    cols: usize,
    xt: &[f32],
    n: usize,
    out: &mut [f32],
    stride: usize,
) {
    assert!(xt.as_ptr().align_offset(64) == 0);
    let sizes = (w.len(), cols, xt.len(), n, out.len(), stride);
    let (pw, px, po) = (w.as_ptr(), xt.as_ptr(), out.as_mut_ptr());
    lane_tiles(sizes, 4, |t| {
        // Lane mask of each vector: the inputs it holds.
        let masks: [__mmask16; 4] = std::array::from_fn(|j| {
            let v = t.v0 + j.min(t.vectors - 1);
            (u32::MAX >> (32 - inputs_in(n, v))) as __mmask16
        });
        let at = TokenTile {
            w: pw.add(t.r0 * cols),
            cols,
            x: px.add(t.v0 * cols * 16),
            out: po.add(t.r0 * stride + t.v0 * 16),
            stride,
            masks,
        };
        macro_rules! tiles {
            ($($v:literal $r:literal),*) => {
                match (t.vectors, t.rows) {
                    $(($v, $r) => at.run::<$v, $r>(t.k),)*
                    _ => unreachable!("1..=4 vectors, 1..=6 rows"),
                }
            };
        }
        tiles!(4 6, 4 5, 4 4, 4 3, 4 2, 4 1, 3 6, 3 5, 3 4, 3 3, 3 2, 3 1,
            2 6, 2 5, 2 4, 2 3, 2 2, 2 1, 1 6, 1 5, 1 4, 1 3, 1 2, 1 1);
    });
}

/// `xt[(v * cols + k) * 16 + l] = x[(16v + l) * cols + k]`, lanes past n zero: one gather per column
/// and lane vector, instead of a scalar loop of strided copies.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn transpose_inputs_avx512(x: &[f32], n: usize, cols: usize, xt: &mut [f32]) {
    let vectors = n.div_ceil(16);
    assert!(x.len() >= n * cols && xt.len() >= vectors * 16 * cols);
    assert!(16 * cols <= i32::MAX as usize / 4, "gather offsets are i32");
    let offsets = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(cols as i32),
    );
    for (v, block) in xt.chunks_exact_mut(16 * cols).take(vectors).enumerate() {
        let inputs = (n - 16 * v).min(16);
        let mask = (u32::MAX >> (32 - inputs)) as __mmask16;
        let base = x.as_ptr().add(16 * v * cols);
        for (k, lanes) in block.chunks_exact_mut(16).enumerate() {
            let g = _mm512_mask_i32gather_ps::<4>(
                _mm512_setzero_ps(),
                mask,
                offsets,
                base.add(k).cast(),
            );
            _mm512_storeu_ps(lanes.as_mut_ptr(), g);
        }
    }
}

/// Where one tile of [`tokens_f32_block_avx512`] reads and writes.
struct TokenTile {
    w: *const f32,
    cols: usize,
    x: *const f32,
    out: *mut f32,
    stride: usize,
    masks: [__mmask16; 4],
}

impl TokenTile {
    /// R rows × V lane vectors over columns `k`: the sums continue from `out` after the first pass.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn run<const V: usize, const R: usize>(&self, k: std::ops::Range<usize>) {
        let &TokenTile {
            w,
            cols,
            x,
            out,
            stride,
            masks,
        } = self;
        let mut a = [[_mm512_setzero_ps(); V]; R];
        if k.start > 0 {
            for (r, ar) in a.iter_mut().enumerate() {
                for (v, av) in ar.iter_mut().enumerate() {
                    *av = _mm512_maskz_loadu_ps(masks[v], out.add(r * stride + v * 16));
                }
            }
        }
        for c in k {
            let xv: [__m512; V] =
                std::array::from_fn(|v| _mm512_load_ps(x.add((v * cols + c) * 16)));
            for (r, ar) in a.iter_mut().enumerate() {
                let wr = _mm512_set1_ps(*w.add(r * cols + c));
                for (av, &xc) in ar.iter_mut().zip(&xv) {
                    *av = _mm512_fmadd_ps(xc, wr, *av);
                }
            }
        }
        for (r, ar) in a.iter().enumerate() {
            for (v, &av) in ar.iter().enumerate() {
                _mm512_mask_storeu_ps(out.add(r * stride + v * 16), masks[v], av);
            }
        }
    }
}

/// `_mm512_reduce_add_ps` of 16 vectors at once: lane 4j + b of the result is the sum of vector
/// 4b + j, by the same additions (lanes i + (i+8), then + (i+4), then + (i+2), then + (i+1)),
/// arranged so that each step adds two whole vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn reduce_add_16(v: [__m512; 16]) -> __m512 {
    // Halves: [A lo256 + A hi256, B lo256 + B hi256] for pairs (A, B).
    let b: [__m512; 8] = std::array::from_fn(|j| {
        let (a, b) = (v[2 * j], v[2 * j + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xEE>(a, b),
        )
    });
    // Quarters: 128-bit block k of c[i] belongs to vector 4i + k.
    let c: [__m512; 4] = std::array::from_fn(|i| {
        let (p, q) = (b[2 * i], b[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(p, q),
            _mm512_shuffle_f32x4::<0xDD>(p, q),
        )
    });
    // Within each block: lanes (0 + 2, 1 + 3) of two vectors side by side.
    let d: [__m512; 2] = std::array::from_fn(|i| {
        let (p, q) = (c[2 * i], c[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(p, q),
            _mm512_shuffle_ps::<0xEE>(p, q),
        )
    });
    _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(d[0], d[1]),
        _mm512_shuffle_ps::<0xDD>(d[0], d[1]),
    )
}

/// f16 weights (16 converted per instruction) · f32 activations.
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
unsafe fn dot_f16_avx512(w: &[u16], x: &[f32]) -> f32 {
    let pw = w.as_ptr();
    dot::<__m512>(
        w.len(),
        |i| _mm512_cvtph_ps(_mm256_loadu_si256(pw.add(i) as *const __m256i)),
        |j| crate::kernels::f16_to_f32(w[j]),
        x,
    )
}

/// The 16-row panel kernels of the VNNI path (see [`crate::kernels::panel`]).
fn panels() -> Panels {
    // SAFETY (wrappers): only reachable through the Kernels that [`avx512vnni`] builds after its
    // checks.
    Panels {
        dot_q8: |qw, sw, x, out| unsafe { panel_q8_vnni(qw, sw, x, out) },
        dot_q4: |p, sw, x, out| unsafe { panel_q4_vnni(p, sw, x, out) },
        prefetch_one: true,
        pairs: true,
    }
}

/// Exact group sums of 4 group-pair vectors z_j (groups 2j, 2j+1; lanes 0..8 the first, 8..16 the
/// second) → [g0, …, g7].
#[inline(always)]
unsafe fn hsum_pairs(z: [__m512i; 4]) -> __m256i {
    let u0 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(z[0], z[1]),
        _mm512_unpackhi_epi32(z[0], z[1]),
    );
    let u1 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(z[2], z[3]),
        _mm512_unpackhi_epi32(z[2], z[3]),
    );
    // 128-bit lane k of v = [Σ z0, Σ z1, Σ z2, Σ z3] over elements 4k..4k+4.
    let v = _mm512_add_epi32(_mm512_unpacklo_epi64(u0, u1), _mm512_unpackhi_epi64(u0, u1));
    let lo = _mm512_castsi512_si256(v);
    let hi = _mm512_extracti64x4_epi64::<1>(v);
    let even = _mm_add_epi32(
        _mm256_castsi256_si128(lo),
        _mm256_extracti128_si256::<1>(lo),
    ); // g0 g2 g4 g6
    let odd = _mm_add_epi32(
        _mm256_castsi256_si128(hi),
        _mm256_extracti128_si256::<1>(hi),
    ); // g1 g3 g5 g7
    _mm256_set_m128i(_mm_unpackhi_epi32(even, odd), _mm_unpacklo_epi32(even, odd))
}

/// Groups g, g+1 of q4_0 (32 packed bytes) as 64 unsigned nibbles in element order: the 16-byte
/// halves are duplicated ([A, A, B, B]) and every second 128-bit lane shifted right by 4.
#[inline(always)]
unsafe fn nibbles_pair(p: *const u8) -> __m512i {
    let b = _mm512_castsi256_si512(_mm256_loadu_si256(p as *const __m256i));
    let z = _mm512_shuffle_i64x2::<0b01_01_00_00>(b, b);
    let shifted = _mm512_srlv_epi64(z, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
    _mm512_and_si512(shifted, _mm512_set1_epi8(0x0f))
}

/// q8_0 with VNNI: weights offset to unsigned (w ^ 0x80 = w + 128), one dpbusd per 2 groups,
/// then 128·Σx removed per group.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_q8_vnni(qw: &[i8], sw: &[f32], x: &QRow) -> f32 {
    let (qx, sx, groups) = (x.qs, x.d, sw.len());
    let (pw, px) = (qw.as_ptr(), qx.as_ptr());
    let flip = _mm512_set1_epi8(-128);
    let mut acc = _mm256_setzero_ps();
    let mut g = 0;
    while g + 8 <= groups {
        let mut z = [_mm512_setzero_si512(); 4];
        for (j, zj) in z.iter_mut().enumerate() {
            let o = (g + 2 * j) * QK;
            let w = _mm512_xor_si512(_mm512_loadu_si512(pw.add(o) as *const _), flip);
            let x = _mm512_loadu_si512(px.add(o) as *const _);
            *zj = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
        }
        let s = remove_offset::<7>(hsum_pairs(z), x.sums.as_ptr().add(g));
        acc = accumulate8(acc, s, sw.as_ptr().add(g), sx.as_ptr().add(g));
        g += 8;
    }
    finish(acc, g, |g| group_q8(qw, qx, g), sw, sx)
}

/// q4_0 with VNNI: unsigned nibbles · activations, minus 8·Σx per group.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_q4_vnni(p: &[u8], sw: &[f32], x: &QRow) -> f32 {
    let (qx, sx, groups) = (x.qs, x.d, sw.len());
    let (pp, px) = (p.as_ptr(), qx.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut g = 0;
    while g + 8 <= groups {
        let mut z = [_mm512_setzero_si512(); 4];
        for (j, zj) in z.iter_mut().enumerate() {
            let w = nibbles_pair(pp.add((g + 2 * j) * QK / 2));
            let x = _mm512_loadu_si512(px.add((g + 2 * j) * QK) as *const _);
            *zj = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
        }
        let s = remove_offset::<3>(hsum_pairs(z), x.sums.as_ptr().add(g));
        acc = accumulate8(acc, s, sw.as_ptr().add(g), sx.as_ptr().add(g));
        g += 8;
    }
    finish(acc, g, |g| group_q4(p, qx, g), sw, sx)
}

/// Groups per block of a panel tile: the offsets of a block's groups are prepared together.
const OFFSET_BLOCK: usize = 64;

/// P panels (consecutive, `GROUP_BYTES` per group and panel) times T activation rows. For every
/// group g, `sums(g, init)` adds group g's exact integer dots of each panel's 16 rows and each of the
/// T inputs to `init`, which holds that input's offset correction `-(Σx << SHIFT)` for the group
/// (paths that offset weights to unsigned bytes by `1 << SHIFT`); the sums go into lane g % 8 of
/// that input's accumulators as the scalar definition does (`(s as f32) * (sw * sx)`, a multiply
/// then an add, no FMA), then [`reduce8`] across the 8 lane vectors gives the 16 results of each
/// panel and input (`out[p * stride + t * 16 + i]`).
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_tile<const P: usize, const T: usize, const SHIFT: u32, const GROUP_BYTES: usize>(
    w: *const u8,
    xs: &[QRow],
    sw: &[f32],
    out: &mut [f32],
    stride: usize,
    sums: impl Fn(usize, [__m512i; T]) -> [[__m512i; T]; P],
) {
    let groups = xs[0].d.len();
    assert!(xs.len() == T && sw.len() >= P * 16 * groups);
    assert!(out.len() >= (P - 1) * stride + 16 * T);
    assert!(xs
        .iter()
        .all(|x| x.d.len() == groups && x.sums.len() == groups));
    let ps = sw.as_ptr();
    // Raw pointers held in registers: through the slices the compiler reloaded them every group.
    let xd: [*const f32; T] = std::array::from_fn(|t| xs[t].d.as_ptr());
    // Lane accumulators [panel][input][lane], not zeroed up front (that would be a memset per
    // call): a lane's first group writes 0 + its value (the scalar definition's first add), and
    // lanes no group reaches (fewer than 8 groups) are zeroed at the end.
    let mut acc = std::mem::MaybeUninit::<[[[__m512; 8]; T]; P]>::uninit();
    let base = acc.as_mut_ptr() as *mut __m512;
    let lane = |p: usize, t: usize, l: usize| base.add((p * T + t) * 8 + l);
    // Each block's offsets, computed 16 groups per instruction, are then broadcast from memory
    // straight into the accumulators' initial values (a load, no arithmetic per group).
    // (Left uninitialized: every entry read is written first, and zeroing would be a memset per call.)
    let mut offsets = std::mem::MaybeUninit::<[[i32; OFFSET_BLOCK]; T]>::uninit();
    let off = offsets.as_mut_ptr() as *mut i32;
    for b0 in (0..groups).step_by(OFFSET_BLOCK) {
        let len = OFFSET_BLOCK.min(groups - b0);
        for (t, x) in xs.iter().enumerate() {
            let sums = x.sums[b0..b0 + len].as_ptr();
            for c in (0..len).step_by(16) {
                let k: __mmask16 = if len - c >= 16 {
                    0xffff
                } else {
                    (1u16 << (len - c)) - 1
                };
                let v = _mm512_maskz_loadu_epi32(k, sums.add(c));
                let v = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<SHIFT>(v));
                _mm512_mask_storeu_epi32(off.add(t * OFFSET_BLOCK + c), k, v);
            }
        }
        for g in b0..b0 + len {
            if P == 1 {
                prefetch_group::<T, GROUP_BYTES>(w, ps, g);
            }
            // (A loop: `array::from_fn` here is left as a call per group.)
            let mut init = [_mm512_setzero_si512(); T];
            for (t, v) in init.iter_mut().enumerate() {
                *v = _mm512_set1_epi32(*off.add(t * OFFSET_BLOCK + g - b0));
            }
            let s = sums(g, init);
            for (p, sp) in s.iter().enumerate() {
                let w = _mm512_loadu_ps(ps.add((p * groups + g) * 16));
                for t in 0..T {
                    let d = _mm512_mul_ps(w, _mm512_set1_ps(*xd[t].add(g)));
                    let a = lane(p, t, g % 8);
                    let sum = if g < 8 { _mm512_setzero_ps() } else { *a };
                    *a = _mm512_add_ps(sum, _mm512_mul_ps(_mm512_cvtepi32_ps(sp[t]), d));
                }
            }
        }
    }
    for l in groups..8 {
        for p in 0..P {
            for t in 0..T {
                *lane(p, t, l) = _mm512_setzero_ps();
            }
        }
    }
    // SAFETY: every lane was written above.
    let acc = acc.assume_init();
    for (p, accp) in acc.iter().enumerate() {
        for (t, a) in accp.iter().enumerate() {
            // reduce8 of every row: ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)).
            let s = [
                _mm512_add_ps(a[0], a[4]),
                _mm512_add_ps(a[1], a[5]),
                _mm512_add_ps(a[2], a[6]),
                _mm512_add_ps(a[3], a[7]),
            ];
            let r = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3]));
            _mm512_storeu_ps(out.as_mut_ptr().add(p * stride + 16 * t), r);
        }
    }
}

/// 4 activation bytes at `p` broadcast to all 16 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn broadcast4(p: *const i8) -> __m512i {
    _mm512_set1_epi32((p as *const i32).read_unaligned())
}

/// q8_0, P panels · T inputs: per step, 64 weight bytes of each panel (offset to unsigned by
/// flipping the sign bit) are loaded once and multiplied with 4 bytes of each input, broadcast to
/// all lanes once for all panels; 128·Σx is removed.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_q8_tile<const P: usize, const T: usize>(
    qs: &[i8],
    sw: &[f32],
    xs: &[QRow],
    out: &mut [f32],
    stride: usize,
) {
    let groups = xs[0].d.len();
    assert!(qs.len() >= P * groups * 512 && xs.iter().all(|x| x.qs.len() >= groups * QK));
    let pw = qs.as_ptr();
    let xq: [*const i8; T] = std::array::from_fn(|t| xs[t].qs.as_ptr());
    let flip = _mm512_set1_epi8(-128);
    panel_tile::<P, T, 7, 512>(pw as *const u8, xs, sw, out, stride, |g, init| {
        // One panel: even and odd steps in separate accumulators, two dependency chains of 4
        // `vpdpbusd` instead of one of 8 (integer sums: the order changes no bit). Two panels
        // give enough independent chains as they are.
        let mut s = [[init; P], [[_mm512_setzero_si512(); T]; P]];
        for st in 0..8 {
            let chain = if P == 1 { st % 2 } else { 0 };
            let w: [__m512i; P] = std::array::from_fn(|p| {
                let at = (p * groups + g) * 512 + st * 64;
                _mm512_xor_si512(_mm512_loadu_si512(pw.add(at) as *const _), flip)
            });
            for t in 0..T {
                let x = broadcast4(xq[t].add(g * QK + st * 4));
                for p in 0..P {
                    let a = &mut s[chain][p][t];
                    *a = _mm512_dpbusd_epi32(*a, w[p], x);
                }
            }
        }
        let [mut even, odd] = s;
        if P == 1 {
            for t in 0..T {
                even[0][t] = _mm512_add_epi32(even[0][t], odd[0][t]);
            }
        }
        even
    })
}

/// q4_0, P panels · T inputs: each 64-byte load holds two steps (low and high nibbles, values
/// 0..=15); 8·Σx is removed per group.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_q4_tile<const P: usize, const T: usize>(
    packed: &[u8],
    sw: &[f32],
    xs: &[QRow],
    out: &mut [f32],
    stride: usize,
) {
    let groups = xs[0].d.len();
    assert!(packed.len() >= P * groups * 256 && xs.iter().all(|x| x.qs.len() >= groups * QK));
    let pw = packed.as_ptr();
    let xq: [*const i8; T] = std::array::from_fn(|t| xs[t].qs.as_ptr());
    let low = _mm512_set1_epi8(0x0f);
    panel_tile::<P, T, 3, 256>(pw, xs, sw, out, stride, |g, init| {
        // Low and high nibbles in separate accumulators: two dependency chains of 4 `vpdpbusd`
        // instead of one of 8 (integer sums: the order changes no bit).
        let mut lo = [init; P];
        let mut hi = [[_mm512_setzero_si512(); T]; P];
        for pair in 0..4 {
            let w: [(__m512i, __m512i); P] = std::array::from_fn(|p| {
                let v = _mm512_loadu_si512(pw.add((p * groups + g) * 256 + pair * 64) as *const _);
                (
                    _mm512_and_si512(v, low),
                    _mm512_and_si512(_mm512_srli_epi16::<4>(v), low),
                )
            });
            for t in 0..T {
                let c = g * QK + pair * 8;
                let (x0, x1) = (broadcast4(xq[t].add(c)), broadcast4(xq[t].add(c + 4)));
                for p in 0..P {
                    lo[p][t] = _mm512_dpbusd_epi32(lo[p][t], w[p].0, x0);
                    hi[p][t] = _mm512_dpbusd_epi32(hi[p][t], w[p].1, x1);
                }
            }
        }
        for p in 0..P {
            for t in 0..T {
                lo[p][t] = _mm512_add_epi32(lo[p][t], hi[p][t]);
            }
        }
        lo
    })
}

/// Runs `tile::<P, T>` over all inputs in tiles of 8 (`out`: [panel][input][16]).
macro_rules! panel_tiles {
    ($tile:ident, $P:literal, $w:expr, $sw:expr, $xs:expr, $out:expr) => {{
        let (xs, out): (&[QRow], &mut [f32]) = ($xs, $out);
        let stride = 16 * xs.len();
        for (c, xs) in xs.chunks(8).enumerate() {
            let o = &mut out[c * 8 * 16..];
            match xs.len() {
                1 => $tile::<$P, 1>($w, $sw, xs, o, stride),
                2 => $tile::<$P, 2>($w, $sw, xs, o, stride),
                3 => $tile::<$P, 3>($w, $sw, xs, o, stride),
                4 => $tile::<$P, 4>($w, $sw, xs, o, stride),
                5 => $tile::<$P, 5>($w, $sw, xs, o, stride),
                6 => $tile::<$P, 6>($w, $sw, xs, o, stride),
                7 => $tile::<$P, 7>($w, $sw, xs, o, stride),
                _ => $tile::<$P, 8>($w, $sw, xs, o, stride),
            }
        }
    }};
}

/// Any number of inputs, in tiles of 8: each 64-byte weight load (and, for q8_0, its sign flip)
/// serves 8 inputs. One panel, or two (`qs` holds their values, `sw` their scales, `out` their
/// results one after the other): then each broadcast input serves both.
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_q8_vnni(qs: &[i8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    if sw.len() > 16 * xs[0].d.len() {
        panel_tiles!(panel_q8_tile, 2, qs, sw, xs, out)
    } else {
        panel_tiles!(panel_q8_tile, 1, qs, sw, xs, out)
    }
}

#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn panel_q4_vnni(packed: &[u8], sw: &[f32], xs: &[QRow], out: &mut [f32]) {
    if sw.len() > 16 * xs[0].d.len() {
        panel_tiles!(panel_q4_tile, 2, packed, sw, xs, out)
    } else {
        panel_tiles!(panel_q4_tile, 1, packed, sw, xs, out)
    }
}

// Attention (see `kernels::attend`): the same operations in the same order as the plain
// source. Each takes the path's load (`load(i)`: the vector of f32 from element i on, widened
// from half values for an f16 cache; exact either way).

#[target_feature(enable = "avx512f")]
pub(in crate::kernels) unsafe fn attend_avx512_f32(g: &Group<f32>, out: &mut [f32]) {
    // SAFETY (all loads here): in bounds, checked by the kernels' asserts on `len`.
    attend_with(
        g,
        out,
        |q, kb, scale, s| unsafe {
            score_block_avx512(q, kb.len(), scale, s, |i| {
                _mm512_loadu_ps(kb.as_ptr().add(i))
            })
        },
        |w, v, hd, o| unsafe {
            weighted_sum_2_avx512(w, v.len(), hd, o, |i| _mm512_loadu_ps(v.as_ptr().add(i)))
        },
    )
}

#[target_feature(enable = "avx512f")]
pub(in crate::kernels) unsafe fn attend_avx512_f16(g: &Group<u16>, out: &mut [f32]) {
    let wide = |p: *const u16| _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()));
    attend_with(
        g,
        out,
        |q, kb, scale, s| unsafe {
            score_block_avx512(q, kb.len(), scale, s, |i| wide(kb.as_ptr().add(i)))
        },
        |w, v, hd, o| unsafe {
            weighted_sum_2_avx512(w, v.len(), hd, o, |i| wide(v.as_ptr().add(i)))
        },
    )
}

/// One block's 16 scores in one vector per lane of the dot product (`kb_len` elements of keys
/// from `load`'s base).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn score_block_avx512(
    qh: &[f32],
    kb_len: usize,
    scale: f32,
    s: &mut [f32; KEY_BLOCK],
    load: impl Fn(usize) -> __m512,
) {
    let hd = qh.len();
    assert!(kb_len >= hd * KEY_BLOCK);
    let pq = qh.as_ptr();
    let term = |d: usize| _mm512_mul_ps(_mm512_set1_ps(*pq.add(d)), load(d * KEY_BLOCK));
    let mut acc = [_mm512_setzero_ps(); 8];
    let full = hd / 8 * 8;
    for d in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = _mm512_add_ps(*a, term(d + l));
        }
    }
    let mut tail = _mm512_setzero_ps();
    for d in full..hd {
        tail = _mm512_add_ps(tail, term(d));
    }
    let sum = acc[1..].iter().fold(acc[0], |t, &a| _mm512_add_ps(t, a));
    let r = _mm512_mul_ps(_mm512_add_ps(sum, tail), _mm512_set1_ps(scale));
    _mm512_storeu_ps(s.as_mut_ptr(), r);
}

/// Two heads' weighted sums, 32 then 16 dimensions at a time (independent chains per head
/// and vector; keys in order within each); `v_len` elements of values from `load`'s base.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn weighted_sum_2_avx512(
    w: [&[f32]; 2],
    v_len: usize,
    hd: usize,
    o: [&mut [f32]; 2],
    load: impl Fn(usize) -> __m512,
) -> usize {
    let n = w[0].len();
    assert!(w[1].len() == n && v_len >= n * hd && o[0].len() >= hd && o[1].len() >= hd);
    let pw = w.map(|w| w.as_ptr());
    let po = o.map(|o| o.as_mut_ptr());
    let mut c = 0;
    while c + 32 <= hd {
        let mut a = [_mm512_setzero_ps(); 4];
        for k in 0..n {
            let (v0, v1) = (load(k * hd + c), load(k * hd + c + 16));
            let (w0, w1) = (_mm512_set1_ps(*pw[0].add(k)), _mm512_set1_ps(*pw[1].add(k)));
            a[0] = _mm512_add_ps(a[0], _mm512_mul_ps(w0, v0));
            a[1] = _mm512_add_ps(a[1], _mm512_mul_ps(w0, v1));
            a[2] = _mm512_add_ps(a[2], _mm512_mul_ps(w1, v0));
            a[3] = _mm512_add_ps(a[3], _mm512_mul_ps(w1, v1));
        }
        _mm512_storeu_ps(po[0].add(c), a[0]);
        _mm512_storeu_ps(po[0].add(c + 16), a[1]);
        _mm512_storeu_ps(po[1].add(c), a[2]);
        _mm512_storeu_ps(po[1].add(c + 16), a[3]);
        c += 32;
    }
    while c + 16 <= hd {
        let mut a = [_mm512_setzero_ps(); 2];
        for k in 0..n {
            let v = load(k * hd + c);
            a[0] = _mm512_add_ps(a[0], _mm512_mul_ps(_mm512_set1_ps(*pw[0].add(k)), v));
            a[1] = _mm512_add_ps(a[1], _mm512_mul_ps(_mm512_set1_ps(*pw[1].add(k)), v));
        }
        _mm512_storeu_ps(po[0].add(c), a[0]);
        _mm512_storeu_ps(po[1].add(c), a[1]);
        c += 16;
    }
    c
}

/// [`crate::kernels::quant::quantize_q8_0_groups`] with AVX-512, one group (two vectors) at a time. Only exact operations
/// (max, division, truncation, integer adds), so the values are identical to the scalar code's:
/// NaN is ignored by the maximum (`max_ps` returns its second operand when the first is NaN) and
/// quantizes to 0, as `round_to_q8` does.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(in crate::kernels) unsafe fn quantize_q8_0(v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
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
