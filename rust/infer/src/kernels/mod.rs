//! Matrix kernels behind one interface: the engine calls only these functions for matrix work.
//!
//! * [`matvec`] / [`matmul`] compute `W x` for f32, f16, q8_0 and q4_0 weights ([`MatRef`]).
//!   q8_0 and q4_0 weights multiply q8_0-quantized activations (quantized once per call, into
//!   [`Scratch`]); their results are bit-identical on every ISA path because every path follows the
//!   reduction order of [`scalar::dot_q8`] (documented in docs/performance.md).
//! * The ISA path is chosen once per process by run-time feature detection ([`Kernels::best`]);
//!   [`Kernels::available`] lists every path this CPU can run (tests compare them).
//! * Rows are split into chunks that the engine's team ([`crate::sched::Team`]) or else (with the
//!   "threads" feature) rayon's current pool claims dynamically; small matrices run serially.
//!
//! Layout: this file holds the kernel table ([`Kernels`]) and the walks the paths' tiles share,
//! `matmul.rs` the matmul driver. One file per instruction set holds that path's kernels and its
//! table entry: [`scalar`] (the reference, any target), `x86/avx2.rs`, `x86/avx512.rs`
//! (`x86/mod.rs`: what both share), `neon.rs` (aarch64) and `wasm.rs` (wasm32 simd128). Every
//! function compiled for an instruction set beyond the build's baseline (`#[target_feature]`)
//! lives in those files and is reached only through a table built after run-time detection.
//! [`attend`] (attention), [`math`] (e^x, the SwiGLU gate) and `quant` hold the portable
//! definitions that the paths' entries reproduce bit for bit.

pub(crate) mod attend;
mod f16;
pub(crate) mod math;
mod matmul;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod panel;
mod prefetch;
mod quant;
mod scalar;
#[doc(hidden)]
pub mod selftest;
#[cfg(test)]
mod tests;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use f16::{f16_to_f32, f32_to_f16};
pub use matmul::{matmul, matmul_many, matvec};
pub use quant::{dequantize_row, quantize_q4_0, quantize_q8_0};

use std::ops::Range;
use std::sync::OnceLock;

/// Values per quantization group of q8_0 and q4_0, in the file format and in the kernels alike;
/// groups never straddle rows.
pub const QK: usize = 32;

/// Weight storage of a row-major [rows, cols] matrix.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    /// IEEE half bits.
    F16(&'a [u16]),
    /// `qs[row * cols + c]`, `scales[row * (cols / 32) + g]`.
    Q8_0 {
        qs: &'a [i8],
        scales: &'a [f32],
    },
    /// `rows * cols / 2` bytes; per group 16 bytes, byte j = (q_j + 8) | (q_{j+16} + 8) << 4.
    Q4_0 {
        packed: &'a [u8],
        scales: &'a [f32],
    },
    /// q8_0 in 16-row panels ([`panel`]); `rows % 16 == 0`.
    Q8_0Panels {
        qs: &'a [i8],
        scales: &'a [f32],
    },
    /// q4_0 in 16-row panels ([`panel`]); `rows % 16 == 0`.
    Q4_0Panels {
        packed: &'a [u8],
        scales: &'a [f32],
    },
}

impl Weights<'_> {
    /// Stored in 16-row panels ([`panel`]).
    pub fn in_panels(&self) -> bool {
        matches!(
            self,
            Weights::Q8_0Panels { .. } | Weights::Q4_0Panels { .. }
        )
    }
    /// q8_0 or q4_0, in either layout: multiplied with q8_0-quantized activations.
    pub fn is_quantized(&self) -> bool {
        !matches!(self, Weights::F32(_) | Weights::F16(_))
    }
}

/// A borrowed row-major [rows, cols] weight matrix (a PyTorch Linear weight [out, in]).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub rows: usize,
    pub cols: usize,
    pub w: Weights<'a>,
}

impl MatRef<'_> {
    /// Panics with a reason when the buffers do not match the shape.
    fn check(&self) {
        let n = self.rows * self.cols;
        let groups = || {
            assert!(
                self.cols.is_multiple_of(QK),
                "quantized matrices need cols % {QK} == 0, got {}",
                self.cols
            );
            n / QK
        };
        match &self.w {
            Weights::F32(w) => assert_eq!(w.len(), n, "f32 weights: wrong length"),
            Weights::F16(w) => assert_eq!(w.len(), n, "f16 weights: wrong length"),
            Weights::Q8_0 { qs, scales } | Weights::Q8_0Panels { qs, scales } => {
                let g = groups();
                assert_eq!(qs.len(), n, "q8_0 weights: wrong length");
                assert_eq!(scales.len(), g, "q8_0 scales: wrong length");
            }
            Weights::Q4_0 { packed, scales } | Weights::Q4_0Panels { packed, scales } => {
                let g = groups();
                assert_eq!(packed.len(), n / 2, "q4_0 weights: wrong length");
                assert_eq!(scales.len(), g, "q4_0 scales: wrong length");
            }
        }
        if self.w.in_panels() {
            assert!(
                self.rows.is_multiple_of(panel::ROWS),
                "panel matrices need rows % {} == 0, got {}",
                panel::ROWS,
                self.rows
            );
        }
    }
}

/// Reusable buffers (quantized activations, matmul staging); keep one per engine to avoid allocations.
#[derive(Default, Debug)]
pub struct Scratch {
    qx: Vec<i8>,
    sx: Vec<f32>,
    xsum: Vec<i32>,
    staging: Vec<f32>,
    /// The input, when float weights read it and it does not start on a cache line.
    aligned_x: AlignedBuf,
    /// The inputs in vector lanes, for a path's `token_lanes`.
    xt: AlignedBuf,
    /// For a path's `q8_lanes`: the quantized inputs as f32, the same in vector lanes, and their
    /// scales in lanes.
    qf: AlignedBuf,
    qt: AlignedBuf,
    st: AlignedBuf,
}

/// A reusable f32 buffer whose slices start on a 64-byte boundary. The float tiles load 64 bytes at
/// a time, and a load that straddles two cache lines costs two; nothing else places the forward
/// pass's activations or the widened f16 rows on a line boundary.
#[derive(Debug, Default)]
struct AlignedBuf(Vec<f32>);

impl AlignedBuf {
    fn slice(&mut self, len: usize) -> &mut [f32] {
        const SLACK: usize = 64 / 4 - 1;
        if self.0.len() < len + SLACK {
            self.0.resize(len + SLACK, 0.0);
        }
        let skip = self.0.as_ptr().align_offset(64).min(SLACK);
        &mut self.0[skip..skip + len]
    }
}

/// Prompt tokens from which float prefill takes the path's `token_lanes` (16 per vector: fewer
/// would leave lanes idle).
pub(crate) const TOKEN_LANES_MIN: usize = 16;

/// Inputs from which q8_0 rows take a path's `q8_lanes` (a half lane vector: the kernels skip an
/// empty half). Its results are `dot_q8`'s bits, so unlike [`TOKEN_LANES_MIN`] this threshold
/// changes no result.
pub(crate) const Q8_LANES_MIN: usize = 8;

/// One q8_0-quantized activation row: values, per-group scales, and per-group sums of the values
/// (SIMD paths that offset weights to unsigned bytes subtract `offset * sum` to stay exact).
#[derive(Clone, Copy)]
pub(crate) struct QRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    // Used by the paths that offset weights to unsigned values (x86; q4_0 panels).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub sums: &'a [i32],
}

/// Combines 8 lane sums in the fixed order every path uses:
/// `((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7))`.
#[inline(always)]
pub(crate) fn reduce8(a: [f32; 8]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

type DotF32 = fn(&[f32], &[f32]) -> f32;
type DotF16 = fn(&[u16], &[f32]) -> f32;
type DotF32Block = fn(&[f32], usize, &[f32], &mut [f32], usize);
type TokensF32Block = fn(&[f32], usize, &[f32], usize, &mut [f32], usize);
type TransposeInputs = fn(&[f32], usize, usize, &mut [f32]);

/// A path's float prefill with the inputs in vector lanes (16 per vector): `transpose(x, n, cols,
/// xt)` lays the n inputs out as [`transpose_inputs`] does, once per call; then `block(rows,
/// cols, xt, n, out, stride)` gives every row · every input → `out[i * stride + t]`, each a chain of
/// fused multiply-adds in column order ([`tokens_f32_reference`]). Broadcasting weights against
/// 16 inputs at a time needs no horizontal sums and fewer loads per multiply-add than the row-dot
/// tiles. Its sums are not `dot_f32`'s (within 1e-5 relative of them, like any float path).
#[derive(Clone, Copy)]
pub(crate) struct TokenLanes {
    pub transpose: TransposeInputs,
    pub block: TokensF32Block,
}
type DotQ8 = fn(&[i8], &[f32], &QRow) -> f32;
type DotQ4 = fn(&[u8], &[f32], &QRow) -> f32;
/// `(values, scales, inputs, out, stride)`: every q8_0 row (row layout; `values` of whole rows of
/// `inputs[0].qs.len()` columns, `scales` theirs) · every input → `out[i * stride + t]`, each
/// exactly as `dot_q8` computes it (the group order of [`scalar::dot_q8`]).
type DotQ8Rows = fn(&[i8], &[f32], &[QRow], &mut [f32], usize);
/// `(rows, scales, cols, qt, st, n, out, stride)`: q8_0 prefill with the inputs in vector lanes
/// (see [`Kernels::q8_lanes`]): `rows` are q8_0 weight rows as f32 integers, `scales` theirs,
/// `qt` the n inputs' q8_0 values as f32 laid out as [`transpose_inputs`] does, `st` their scales
/// in lanes (`st[(v * groups + g) * 16 + l]`); every row · every input → `out[i * stride + t]`.
type Q8Lanes = fn(&[f32], &[f32], usize, &[f32], &[f32], usize, &mut [f32], usize);

/// Kernels for 16-row panels ([`panel`]): one panel's values and scales (two, one after the other,
/// where `pairs` says so) · any number of activation rows → 16 results per panel and input,
/// `out[p * 16 * n + t * 16 + i]` (the row definition of the q8_0 / q4_0 dots, bit for bit). Each
/// path takes the inputs in tiles of its own width (VNNI 8, AVX2 4), loading the panel's weights once
/// per tile.
#[derive(Clone, Copy)]
pub struct Panels {
    pub(crate) dot_q8: PanelQ8,
    pub(crate) dot_q4: PanelQ4,
    /// With one input (decode) the kernels request the weights [`prefetch::AHEAD_BYTES`] ahead
    /// group by group themselves, instead of `RowJob::each_panel` requesting a whole panel at once:
    /// a whole panel is hundreds of cache lines requested in one burst, which the kernel then waits
    /// behind (docs/performance.md, "Kernel-layer measurements").
    pub(crate) prefetch_one: bool,
    /// With several inputs (prefill) the kernels take two panels per call (values, scales and
    /// results of both one after the other), sharing each input's broadcasts between them.
    pub(crate) pairs: bool,
}
/// A panel kernel over values of type W: (values, scales, inputs, results).
type PanelKernel<W> = fn(&[W], &[f32], &[QRow], &mut [f32]);
type PanelQ8 = PanelKernel<i8>;
type PanelQ4 = PanelKernel<u8>;

/// The scalar panel kernels (tests, and any path without its own).
const SCALAR_PANELS: Panels = Panels {
    dot_q8: panel::dot_q8_scalar,
    dot_q4: panel::dot_q4_scalar,
    prefetch_one: false,
    pairs: false,
};

/// One ISA path: a row dot product per weight type, the path's block, lane and panel kernels, and
/// its activation quantization, SwiGLU gate and attention. Only constructed for paths the CPU
/// supports.
#[derive(Clone, Copy)]
pub struct Kernels {
    name: &'static str,
    dot_f32: DotF32,
    dot_f16: DotF16,
    dot_q8: DotQ8,
    dot_q4: DotQ4,
    /// `(rows, cols, inputs, out, stride)`: every row · every input → `out[i * stride + t]`, each
    /// exactly as `dot_f32` computes it (prefill shares the loads in tiles), where the path has one.
    dot_f32_block: Option<DotF32Block>,
    /// q8_0 rows (row layout) times several inputs in register tiles: each weight vector is loaded
    /// and sign-split once for a tile of inputs instead of once per input, bit for bit `dot_q8`'s
    /// results, where the path has it (prefill and batched decode; one input takes `dot_q8`).
    dot_q8_rows: Option<DotQ8Rows>,
    /// q8_0 rows times at least [`Q8_LANES_MIN`] inputs by f32 multiply-adds with the inputs in
    /// vector lanes, where the path has it (its FMA units multiply faster than its integer ones).
    /// Exact, not approximate: weights and activations enter as their integer q8_0 values, and a
    /// group's 32 products and every partial sum of them are integers below 2^24 in magnitude
    /// (32 · 128 · 127), which f32 holds exactly, so each group's sum is `dot_q8`'s i32 sum in any
    /// order; the scales then follow `dot_q8`'s f32 steps. The same bits as `dot_q8`.
    q8_lanes: Option<Q8Lanes>,
    /// f16 → f32 of a slice (exact; prefill widens f16 rows once per call).
    widen_f16: fn(&[u16], &mut [f32]),
    /// Float prefill of at least [`TOKEN_LANES_MIN`] inputs with the inputs in vector lanes, where
    /// the path has it (instead of `dot_f32_block`).
    token_lanes: Option<TokenLanes>,
    /// `dot_f16(w, x)` is exactly `dot_f32(widened w, x)` (the same reduction order): prefill may then
    /// widen f16 weights once per row group instead of once per prompt token, with decode's bits.
    f16_is_widened_f32: bool,
    /// The path's 16-row panel kernels, where it has them: then quantized matrices are faster in
    /// the panel layout, and model loading rearranges them (see [`panel`]).
    panels: Option<Panels>,
    /// With `panels`: whether q8_0 matrices go to panels too (q4_0 matrices always do). Not where
    /// the path's q8_0 row kernel decodes faster than its panel kernel (AVX2).
    q8_in_panels: bool,
    /// Whether the row-by-row walk (f32, f16 and row-layout q8_0 / q4_0 weights) requests each
    /// row's bytes ahead in software ([`prefetch::ahead`]) before multiplying it. Not where the
    /// hardware prefetcher keeps up with that sequential stream alone and the extra requests only
    /// slow it (AVX2, measured in docs/performance.md). Panel and tile kernels keep their own.
    prefetch_rows: bool,
    /// q8_0 quantization of activations (`quant::quantize_q8_0_groups`' values on every path).
    quantize_q8: Quantize,
    /// The SwiGLU gate (`math::silu_gate_plain`'s bits on every path).
    silu_gate: fn(&mut [f32], &[f32]),
    /// Softmax attention of one group of query heads over an f32 / f16 KV cache ([`attend`]; the
    /// same bits on every path).
    attend_f32: Attend<f32>,
    attend_f16: Attend<u16>,
}

type Quantize = fn(&[f32], &mut [i8], &mut [f32]);
type Attend<E> = fn(&attend::Group<E>, &mut [f32]);

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kernels({})", self.name)
    }
}

const SCALAR: Kernels = Kernels {
    name: "scalar",
    dot_f32: scalar::dot_f32,
    dot_f16: scalar::dot_f16,
    dot_q8: scalar::dot_q8,
    dot_q4: scalar::dot_q4,
    dot_f32_block: None,
    dot_q8_rows: None,
    q8_lanes: None,
    widen_f16: f16::widen,
    token_lanes: None,
    f16_is_widened_f32: true,
    panels: None,
    q8_in_panels: false,
    prefetch_rows: true,
    quantize_q8: quant::quantize_q8_0_groups,
    silu_gate: math::silu_gate_plain,
    attend_f32: attend::attend_plain,
    attend_f16: attend::attend_plain,
};

impl Kernels {
    /// Every path this CPU can run, the scalar reference first and the fastest last.
    pub fn available() -> Vec<Kernels> {
        let mut paths = vec![SCALAR];
        #[cfg(target_arch = "x86_64")]
        paths.extend(x86::avx2());
        #[cfg(target_arch = "x86_64")]
        paths.extend(x86::avx512vnni());
        #[cfg(target_arch = "aarch64")]
        paths.extend(neon::neon().into_iter().chain(neon::neon_dotprod()));
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        paths.extend(wasm::simd128());
        paths
    }

    /// The fastest available path, detected once per process. The environment variable
    /// `NANO_KERNELS=<name>` (e.g. `avx2`, `scalar`) picks another available path instead, to compare
    /// paths on one machine; an unknown or unavailable name is reported and ignored.
    pub fn best() -> Kernels {
        static BEST: OnceLock<Kernels> = OnceLock::new();
        *BEST.get_or_init(|| {
            let paths = Self::available();
            let fastest = *paths.last().expect("scalar is always available");
            let Some(wanted) = std::env::var_os("NANO_KERNELS") else {
                return fastest;
            };
            let wanted = wanted.to_string_lossy();
            match paths.iter().find(|k| k.name == wanted) {
                Some(k) => *k,
                None => {
                    let names: Vec<&str> = paths.iter().map(|k| k.name).collect();
                    eprintln!(
                        "NANO_KERNELS={wanted}: not available here ({}); using {}",
                        names.join(", "),
                        fastest.name
                    );
                    fastest
                }
            }
        })
    }

    /// This path's own panel kernels, when it has them: then quantized matrices are faster in the
    /// panel layout, and model loading rearranges them (see [`panel`]).
    pub fn panels(&self) -> Option<Panels> {
        self.panels
    }

    /// Whether model loading should rearrange q4_0 (`q4`) or q8_0 matrices into panels for this path.
    pub fn prefers_panels(&self, q4: bool) -> bool {
        self.panels.is_some() && (q4 || self.q8_in_panels)
    }

    /// q8_0 of `v` (whole groups) into `qs` and `scales`.
    pub(crate) fn quantize_q8_0(&self, v: &[f32], qs: &mut [i8], scales: &mut [f32]) {
        (self.quantize_q8)(v, qs, scales)
    }

    /// `h[i] = silu(h[i]) · g[i]` ([`math::silu_gate`]).
    pub(crate) fn silu_gate(&self, h: &mut [f32], g: &[f32]) {
        (self.silu_gate)(h, g)
    }

    /// Attention of one group of query heads over an f32 KV cache; writes [group, head_dim].
    pub(crate) fn attend_f32(&self, g: &attend::Group<f32>, out: &mut [f32]) {
        (self.attend_f32)(g, out)
    }

    /// Attention of one group of query heads over an f16 KV cache; writes [group, head_dim].
    pub(crate) fn attend_f16(&self, g: &attend::Group<u16>, out: &mut [f32]) {
        (self.attend_f16)(g, out)
    }

    /// The path's name, e.g. "scalar", "avx2", "neon-dotprod".
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Columns per pass of a `TokenLanes::block`: 4 lane vectors of them (64 inputs) take 32 KiB,
/// which stay in L1 while every row of a group passes over them.
const TOKEN_COLUMNS: usize = 128;

/// The walk every `dot_f32_block` takes over `rows × inputs` results, after checking its arguments
/// (`w` of whole rows, `x` of whole inputs, `out` of rows spaced `stride` apart): rows `tall` at a
/// time (fewer left: one by one), and per row group `tile(first row, first input, whole group?,
/// inputs left)`, which multiplies up to 4 of those inputs and returns how many it took.
#[inline(always)]
pub(crate) fn block_tiles(
    (w_len, cols, x_len, out_len, stride): (usize, usize, usize, usize, usize),
    tall: usize,
    mut tile: impl FnMut(usize, usize, bool, usize) -> usize,
) {
    let (rows, inputs) = (w_len / cols, x_len / cols);
    if rows == 0 || inputs == 0 {
        return;
    }
    assert!(
        out_len >= (rows - 1) * stride + inputs && inputs <= stride,
        "output too short"
    );
    let mut r = 0;
    while r < rows {
        let whole = rows - r >= tall;
        let mut t = 0;
        while t < inputs {
            t += tile(r, t, whole, inputs - t);
        }
        r += if whole { tall } else { 1 };
    }
}

/// One tile of a `TokenLanes::block`: columns `k` of rows `r0..r0 + rows` times the lane vectors
/// `v0..v0 + vectors` (16 inputs each, the last one's real inputs counted by [`inputs_in`]).
pub(crate) struct LaneTile {
    pub k: Range<usize>,
    pub v0: usize,
    pub vectors: usize,
    pub r0: usize,
    pub rows: usize,
}

/// The walk every `TokenLanes::block` takes over `rows × n` results, after checking its arguments
/// (`xt` of `n.div_ceil(16) * 16 * cols` values, `out` of rows spaced `stride` apart): passes of
/// [`TOKEN_COLUMNS`] columns, so that one pass's lane vectors stay in L1 while every row goes by;
/// within a pass up to `group` lane vectors and 6 rows per tile. A pass continues the sums the one
/// before it stored, so the passes change no bit.
#[inline(always)]
pub(crate) fn lane_tiles(
    (w_len, cols, xt_len, n, out_len, stride): (usize, usize, usize, usize, usize, usize),
    group: usize,
    mut tile: impl FnMut(LaneTile),
) {
    let (rows, vectors) = (w_len / cols, n.div_ceil(16));
    if rows == 0 || n == 0 {
        return;
    }
    assert!(xt_len >= vectors * cols * 16, "inputs in lanes: too short");
    assert!(
        out_len >= (rows - 1) * stride + n && n <= stride,
        "output too short"
    );
    for k0 in (0..cols).step_by(TOKEN_COLUMNS) {
        let k = k0..(k0 + TOKEN_COLUMNS).min(cols);
        for v0 in (0..vectors).step_by(group) {
            for r0 in (0..rows).step_by(6) {
                tile(LaneTile {
                    k: k.clone(),
                    v0,
                    vectors: (vectors - v0).min(group),
                    r0,
                    rows: (rows - r0).min(6),
                });
            }
        }
    }
}

/// Real inputs (not padding) in lane vector v of n inputs: 1..=16.
pub(crate) fn inputs_in(n: usize, v: usize) -> usize {
    (n - 16 * v).min(16)
}

/// `xt[(v * cols + k) * 16 + l] = x[(16v + l) * cols + k]`: n inputs of `cols` values in vector lanes,
/// 16 per lane vector, lanes past n zero (`xt` holds `n.div_ceil(16) * 16 * cols` values). The
/// portable form of `TokenLanes::transpose` (x86 gathers instead: there only the tests use it).
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
pub(crate) fn transpose_inputs(x: &[f32], n: usize, cols: usize, xt: &mut [f32]) {
    for (v, block) in xt.chunks_exact_mut(16 * cols).enumerate() {
        let inputs = n.saturating_sub(16 * v).min(16);
        for l in 0..16 {
            // Input by input: its values are read in order, written 16 apart.
            let from = (l < inputs).then(|| &x[(16 * v + l) * cols..][..cols]);
            for (k, lanes) in block.chunks_exact_mut(16).enumerate() {
                lanes[l] = from.map_or(0.0, |row| row[k]);
            }
        }
    }
}

/// The sums of a `TokenLanes::block`: `acc = w[k] · x[k] + acc` rounded once (a fused multiply-add),
/// for k in column order from 0.
#[cfg(test)]
pub(crate) fn tokens_f32_reference(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).fold(0.0, |acc, (&w, &x)| w.mul_add(x, acc))
}
