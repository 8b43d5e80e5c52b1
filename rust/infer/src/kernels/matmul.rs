//! The matmul driver: [`Kernels::matmul_many`] (and [`Kernels::matvec`] / [`Kernels::matmul`] through
//! it) quantizes the input once, splits the rows of every matrix into chunks over the current team
//! ([`crate::sched`]), multiplies each chunk with the path's kernels (row dots, block, lane or panel
//! kernels, cache-blocked for several inputs) and moves the results into place.

use std::cell::RefCell;
use std::ops::Range;

use super::{
    panel, prefetch, AlignedBuf, Kernels, MatRef, PanelKernel, Panels, QRow, Scratch, Weights,
    Q8_LANES_MIN, QK, SCALAR_PANELS, TOKEN_LANES_MIN,
};
use crate::sched::{spread, token_chunk, Team};

impl Kernels {
    /// `out = W x` (`out.len() == rows`, `x.len() == cols`).
    pub fn matvec(&self, out: &mut [f32], m: &MatRef, x: &[f32], scratch: &mut Scratch) {
        self.matmul(out, m, x, 1, scratch);
    }

    /// `out[n, rows] = X[n, cols] Wᵀ`; each weight row is read once for all n inputs.
    pub fn matmul(&self, out: &mut [f32], m: &MatRef, x: &[f32], n: usize, scratch: &mut Scratch) {
        self.matmul_many(&mut [out], std::slice::from_ref(m), x, n, scratch);
    }

    /// `outs[i][n, rows_i] = X[n, cols] W_iᵀ` for several matrices that share the input (fused Q|K|V,
    /// W1|W3): the input is quantized once and all rows of all matrices are one parallel job.
    /// Results are bit-identical to separate [`Kernels::matmul`] calls.
    pub fn matmul_many(
        &self,
        outs: &mut [&mut [f32]],
        mats: &[MatRef],
        x: &[f32],
        n: usize,
        scratch: &mut Scratch,
    ) {
        assert_eq!(outs.len(), mats.len(), "one output per matrix");
        let Some(cols) = mats.first().map(|m| m.cols) else {
            return;
        };
        for (m, out) in mats.iter().zip(outs.iter()) {
            m.check();
            assert_eq!(
                m.cols, cols,
                "matrices of one call must share their input size"
            );
            assert_eq!(out.len(), n * m.rows, "output must be n * rows values");
        }
        assert_eq!(x.len(), n * cols, "input must be n * cols values");
        if n == 0 {
            return;
        }
        let Scratch {
            qx,
            sx,
            xsum,
            staging,
            aligned_x,
            xt,
            qf,
            qt,
            st,
        } = scratch;
        let x = if mats.iter().any(|m| !m.w.is_quantized())
            && x.as_ptr().cast::<u8>().align_offset(64) != 0
        {
            let a = aligned_x.slice(x.len());
            a.copy_from_slice(x);
            &*a
        } else {
            x
        };
        let quantized = mats.iter().any(|m| m.w.is_quantized());
        if quantized {
            qx.resize(x.len(), 0);
            sx.resize(x.len() / QK, 0.0);
            xsum.resize(x.len() / QK, 0);
            let c = token_chunk(n, cols);
            let g = cols / QK;
            let parts = x
                .chunks(c * cols)
                .zip(qx.chunks_mut(c * cols))
                .zip(sx.chunks_mut(c * g).zip(xsum.chunks_mut(c * g)));
            spread(parts, |((x, qx), (sx, xsum))| {
                (self.quantize_q8)(x, qx, sx);
                for (s, q) in xsum.iter_mut().zip(qx.chunks_exact(QK)) {
                    *s = q.iter().map(|&v| v as i32).sum();
                }
            });
        }
        let xt = match self.token_lanes {
            Some(lanes) if n >= TOKEN_LANES_MIN && mats.iter().any(|m| !m.w.is_quantized()) => {
                let xt = xt.slice(n.div_ceil(16) * 16 * cols);
                (lanes.transpose)(x, n, cols, xt);
                Some(&*xt)
            }
            _ => None,
        };
        let q8t = match self.q8_lanes {
            Some(_)
                if n >= Q8_LANES_MIN
                    && mats.iter().any(|m| matches!(m.w, Weights::Q8_0 { .. })) =>
            {
                Some(q8_in_lanes(self, (qx, sx), n, cols, (qf, qt, st)))
            }
            _ => None,
        };
        let jobs: Vec<RowJob> = mats
            .iter()
            .map(|m| RowJob {
                k: *self,
                m,
                x,
                xt,
                q8t,
                qx,
                sx,
                xsum,
                n,
            })
            .collect();
        if n == 1 {
            // Outputs are already in [rows] order: rows write straight into them.
            run_jobs(&jobs, outs.iter_mut().map(|o| &mut **o).collect(), cols);
            return;
        }
        // Stage each output as [rows, n] so row chunks are contiguous, then transpose into [n, rows].
        staging.resize(n * mats.iter().map(|m| m.rows).sum::<usize>(), 0.0);
        let mut dsts = Vec::with_capacity(mats.len());
        let mut rest = &mut staging[..];
        for m in mats {
            let (d, r) = rest.split_at_mut(n * m.rows);
            dsts.push(d);
            rest = r;
        }
        run_jobs(&jobs, dsts, cols);
        let mut offset = 0;
        for (m, out) in mats.iter().zip(outs.iter_mut()) {
            let staged = &staging[offset..offset + n * m.rows];
            offset += n * m.rows;
            let c = token_chunk(n, m.rows);
            spread(out.chunks_mut(c * m.rows).enumerate(), |(i, out)| {
                unstage(staged, m, n, i * c, out)
            });
        }
    }
}

/// The n quantized inputs (`qx`, scales `sx`) for a path's `q8_lanes`: their values as f32 in
/// vector lanes (as [`super::transpose_inputs`] lays them out) and their scales in lanes
/// (`[v][group][16]`), lanes past n zero.
fn q8_in_lanes<'a>(
    k: &Kernels,
    (qx, sx): (&[i8], &[f32]),
    n: usize,
    cols: usize,
    (qf, qt, st): (&mut AlignedBuf, &'a mut AlignedBuf, &'a mut AlignedBuf),
) -> (&'a [f32], &'a [f32]) {
    let (vectors, groups) = (n.div_ceil(16), cols / QK);
    let qf = qf.slice(n * cols);
    for (f, &q) in qf.iter_mut().zip(qx) {
        *f = q as f32;
    }
    let qt = qt.slice(vectors * 16 * cols);
    match k.token_lanes {
        Some(lanes) => (lanes.transpose)(qf, n, cols, qt),
        None => super::transpose_inputs(qf, n, cols, qt),
    }
    let st = st.slice(vectors * groups * 16);
    st.fill(0.0);
    for (t, d) in sx.chunks_exact(groups).take(n).enumerate() {
        let (v, l) = (t / 16, t % 16);
        for (g, &d) in d.iter().enumerate() {
            st[(v * groups + g) * 16 + l] = d;
        }
    }
    (qt, st)
}

/// Moves the staged results of inputs `t0..` into `out` ([t, rows], as many inputs as it holds).
/// Staged as [rows, n], or for panels as [panel][t][16] (16 contiguous results per panel and input).
fn unstage(staged: &[f32], m: &MatRef, n: usize, t0: usize, out: &mut [f32]) {
    if m.w.in_panels() {
        for (t, out) in (t0..).zip(out.chunks_exact_mut(m.rows)) {
            for (p, dst) in out.chunks_exact_mut(panel::ROWS).enumerate() {
                let at = (p * n + t) * panel::ROWS;
                // A fixed-size copy: inlined moves instead of a memcpy call per panel.
                let dst: &mut [f32; panel::ROWS] = dst.try_into().expect("16 values");
                *dst = staged[at..at + panel::ROWS].try_into().expect("16 values");
            }
        }
        return;
    }
    // 16 inputs at a time, so each staged cache line (16 inputs of one row) is read once, not
    // once per input after the other rows have pushed it out of L1.
    for (b, outs) in out.chunks_mut(16 * m.rows).enumerate() {
        let t = t0 + 16 * b;
        for r in 0..m.rows {
            let from = &staged[r * n + t..][..outs.len() / m.rows];
            for (o, &v) in outs.chunks_exact_mut(m.rows).zip(from) {
                o[r] = v;
            }
        }
    }
}

/// The per-call state shared by all row chunks.
struct RowJob<'a> {
    k: Kernels,
    m: &'a MatRef<'a>,
    x: &'a [f32],
    /// The inputs in vector lanes, when float rows take the path's `token_lanes`.
    xt: Option<&'a [f32]>,
    /// The quantized inputs and their scales in vector lanes, when q8_0 rows take the path's
    /// `q8_lanes`.
    q8t: Option<(&'a [f32], &'a [f32])>,
    qx: &'a [i8],
    sx: &'a [f32],
    xsum: &'a [i32],
    n: usize,
}

impl RowJob<'_> {
    /// Input t, quantized.
    fn qrow(&self, t: usize) -> QRow<'_> {
        let (cols, g) = (self.m.cols, self.m.cols / QK);
        QRow {
            qs: &self.qx[t * cols..(t + 1) * cols],
            d: &self.sx[t * g..(t + 1) * g],
            sums: &self.xsum[t * g..(t + 1) * g],
        }
    }

    /// Fills `dst[(r - r0) * n + t]` for the rows starting at `r0`; weights of a row stay in cache for all t.
    /// The dtype is matched once per chunk, not per row.
    fn rows_into(&self, r0: usize, dst: &mut [f32]) {
        let (cols, g, k) = (self.m.cols, self.m.cols / QK, self.k);
        let xrow = |t: usize| &self.x[t * cols..(t + 1) * cols];
        let qrow = |t: usize| self.qrow(t);
        match &self.m.w {
            Weights::F32(w) if self.n > 1 => self.each_f32_blocked(r0, dst, w),
            Weights::F32(w) => self.each(
                r0,
                dst,
                cols * 4,
                |r| prefetch::ahead(&w[r * cols], cols * 4),
                |r, t| (k.dot_f32)(&w[r * cols..(r + 1) * cols], xrow(t)),
            ),
            Weights::F16(w) if self.n > 1 && (k.f16_is_widened_f32 || self.xt.is_some()) => {
                self.each_widened(r0, dst, w)
            }
            Weights::F16(w) => self.each(
                r0,
                dst,
                cols * 2,
                |r| prefetch::ahead(&w[r * cols], cols * 2),
                |r, t| (k.dot_f16)(&w[r * cols..(r + 1) * cols], xrow(t)),
            ),
            Weights::Q8_0 { qs, scales } if self.q8t.is_some() => {
                self.each_q8_lanes(r0, dst, (qs, scales))
            }
            Weights::Q8_0 { qs, scales } if self.n > 1 && k.dot_q8_rows.is_some() => {
                let kernel = k.dot_q8_rows.expect("checked");
                self.each_q8_tiled(r0, dst, (qs, scales), kernel)
            }
            Weights::Q8_0 { qs, scales } => self.each(
                r0,
                dst,
                cols + g * 4,
                |r| {
                    prefetch::ahead(&qs[r * cols], cols);
                    prefetch::ahead(&scales[r * g], g * 4);
                },
                |r, t| {
                    let (w, d) = (&qs[r * cols..(r + 1) * cols], &scales[r * g..(r + 1) * g]);
                    (k.dot_q8)(w, d, &qrow(t))
                },
            ),
            Weights::Q4_0 { packed, scales } => self.each(
                r0,
                dst,
                cols / 2 + g * 4,
                |r| {
                    prefetch::ahead(&packed[r * cols / 2], cols / 2);
                    prefetch::ahead(&scales[r * g], g * 4);
                },
                |r, t| {
                    let w = &packed[r * cols / 2..(r + 1) * cols / 2];
                    (k.dot_q4)(w, &scales[r * g..(r + 1) * g], &qrow(t))
                },
            ),
            Weights::Q8_0Panels { qs, scales } => {
                let p = k.panels().unwrap_or(SCALAR_PANELS);
                self.each_panel(r0, dst, (qs, 16 * cols), (scales, 16 * g), p, p.dot_q8)
            }
            Weights::Q4_0Panels { packed, scales } => {
                let p = k.panels().unwrap_or(SCALAR_PANELS);
                self.each_panel(r0, dst, (packed, 8 * cols), (scales, 16 * g), p, p.dot_q4)
            }
        }
    }

    /// Panel by panel (`r0 % 16 == 0`), or two at a time where the kernels take pairs (prefill),
    /// all inputs in one kernel call (the kernel tiles them). `dst` is staged as [panel][t][16]
    /// (for n = 1 that is plain row order). `values` and `scales` are the whole matrix's, with the
    /// length of one panel's. Each call's weights are requested ahead here, unless the kernel does
    /// it itself (`prefetch_one`, one input).
    fn each_panel<W>(
        &self,
        r0: usize,
        dst: &mut [f32],
        (values, values_len): (&[W], usize),
        (scales, scales_len): (&[f32], usize),
        p: Panels,
        kernel: PanelKernel<W>,
    ) {
        debug_assert!(r0.is_multiple_of(panel::ROWS));
        let n = self.n;
        // (One input, decode: no list allocated per chunk.)
        let one;
        let many: Vec<QRow>;
        let rows: &[QRow] = if n == 1 {
            one = [self.qrow(0)];
            &one
        } else {
            many = (0..n).map(|t| self.qrow(t)).collect();
            &many
        };
        let per_call = if p.pairs && n > 1 { 2 } else { 1 };
        let first = r0 / panel::ROWS;
        for (c, block) in dst.chunks_mut(per_call * panel::ROWS * n).enumerate() {
            let (at, count) = (first + c * per_call, block.len() / (panel::ROWS * n));
            let w = &values[at * values_len..(at + count) * values_len];
            let s = &scales[at * scales_len..(at + count) * scales_len];
            if !(p.prefetch_one && n == 1) {
                prefetch::ahead(w.as_ptr(), std::mem::size_of_val(w));
                prefetch::ahead(s.as_ptr(), std::mem::size_of_val(s));
            }
            kernel(w, s, rows, block);
        }
    }

    /// Row by row: request the weights [`prefetch::AHEAD_BYTES`] ahead (where the path's
    /// `prefetch_rows` says so), then the row's n dot products.
    /// Several inputs (prefill) are cache-blocked: rows in groups that stay in L2, inputs in blocks
    /// that stay in L1, so each dot product reads both operands from cache nearest the core instead
    /// of streaming every input from L2 once per row. Each output is still one call of `f`: the
    /// same bits as one input at a time.
    #[inline(always)]
    fn each(
        &self,
        r0: usize,
        dst: &mut [f32],
        row_bytes: usize,
        fetch: impl Fn(usize),
        f: impl Fn(usize, usize) -> f32,
    ) {
        let n = self.n;
        for group in row_groups(dst.len() / n, row_bytes) {
            for inputs in input_blocks(n, self.m.cols) {
                for i in group.clone() {
                    if inputs.start == 0 && self.k.prefetch_rows {
                        fetch(r0 + i);
                    }
                    for t in inputs.clone() {
                        dst[i * n + t] = f(r0 + i, t);
                    }
                }
            }
        }
    }
}

impl RowJob<'_> {
    /// q8_0 rows times several inputs by the path's register tiles (`Kernels::dot_q8_rows`): rows
    /// in groups that stay in L2, quantized inputs in blocks that stay in L1, as [`RowJob::each`]
    /// walks them; every result is still `dot_q8`'s.
    fn each_q8_tiled(
        &self,
        r0: usize,
        dst: &mut [f32],
        (qs, scales): (&[i8], &[f32]),
        kernel: super::DotQ8Rows,
    ) {
        let (n, cols, g) = (self.n, self.m.cols, self.m.cols / QK);
        let inputs: Vec<QRow> = (0..n).map(|t| self.qrow(t)).collect();
        // An input's quantized values, scales and group sums.
        let input_bytes = cols + g * 8;
        let block = (L1_BLOCK_BYTES / input_bytes).clamp(1, n);
        for rows in row_groups(dst.len() / n, cols + g * 4) {
            let (a, b) = (r0 + rows.start, r0 + rows.end);
            for t0 in (0..n).step_by(block) {
                let t1 = (t0 + block).min(n);
                kernel(
                    &qs[a * cols..b * cols],
                    &scales[a * g..b * g],
                    &inputs[t0..t1],
                    &mut dst[rows.start * n + t0..],
                    n,
                );
            }
        }
    }

    /// q8_0 rows times the inputs in lanes (`Kernels::q8_lanes`): each row group's values are
    /// widened to f32 once (exact integers, into a per-thread buffer) and multiplied there.
    fn each_q8_lanes(&self, r0: usize, dst: &mut [f32], (qs, scales): (&[i8], &[f32])) {
        thread_local! {
            static WIDE: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf(Vec::new())) };
        }
        let (n, cols, g) = (self.n, self.m.cols, self.m.cols / QK);
        let (kernel, (qt, st)) = (
            self.k.q8_lanes.expect("set with q8t"),
            self.q8t.expect("checked by the caller"),
        );
        WIDE.with_borrow_mut(|wide| {
            for rows in row_groups(dst.len() / n, cols * 4) {
                let (a, b) = (r0 + rows.start, r0 + rows.end);
                let wide = wide.slice((b - a) * cols);
                for (f, &q) in wide.iter_mut().zip(&qs[a * cols..b * cols]) {
                    *f = q as f32;
                }
                let out = &mut dst[rows.start * n..];
                kernel(wide, &scales[a * g..b * g], cols, qt, st, n, out, n);
            }
        });
    }

    /// f32 weights times several inputs: row groups, each multiplied by [`RowJob::float_group`].
    fn each_f32_blocked(&self, r0: usize, dst: &mut [f32], w: &[f32]) {
        let (n, cols) = (self.n, self.m.cols);
        for g in row_groups(dst.len() / n, cols * 4) {
            self.float_group(
                &w[(r0 + g.start) * cols..(r0 + g.end) * cols],
                &mut dst[g.start * n..g.end * n],
            );
        }
    }

    /// f16 weights times several inputs: each row group is widened to f32 once (into a per-thread
    /// buffer) and multiplied as f32 rows, instead of converting every weight once per prompt
    /// token. Only where that keeps the results defined: with the inputs in vector lanes (their
    /// own order), or where the f32 dot of widened rows gives the bits of `dot_f16`
    /// (`f16_is_widened_f32`).
    fn each_widened(&self, r0: usize, dst: &mut [f32], w: &[u16]) {
        thread_local! {
            static WIDE: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf(Vec::new())) };
        }
        let (n, cols) = (self.n, self.m.cols);
        WIDE.with_borrow_mut(|wide| {
            for g in row_groups(dst.len() / n, cols * 4) {
                let half = &w[(r0 + g.start) * cols..(r0 + g.end) * cols];
                let wide = wide.slice(half.len());
                (self.k.widen_f16)(half, wide);
                self.float_group(wide, &mut dst[g.start * n..g.end * n]);
            }
        });
    }

    /// `dst[i * n + t] = rows_i · x_t` for a group of f32 rows (kept in L2), inputs in blocks that
    /// stay in L1: by the path's block kernel where it has one (tiles sharing their loads, each
    /// result exactly as `dot_f32`'s), else one dot at a time.
    fn float_group(&self, rows: &[f32], dst: &mut [f32]) {
        let (n, cols, dot) = (self.n, self.m.cols, self.k.dot_f32);
        if let (Some(xt), Some(lanes)) = (self.xt, self.k.token_lanes) {
            return (lanes.block)(rows, cols, xt, n, dst, n);
        }
        for Range { start: t0, end: t1 } in input_blocks(n, cols) {
            let xs = &self.x[t0 * cols..t1 * cols];
            match self.k.dot_f32_block {
                Some(block) => block(rows, cols, xs, &mut dst[t0..], n),
                None => {
                    for (i, row) in rows.chunks_exact(cols).enumerate() {
                        for (t, x) in (t0..).zip(xs.chunks_exact(cols)) {
                            dst[i * n + t] = dot(row, x);
                        }
                    }
                }
            }
        }
    }
}

/// Weights of one row group of a blocked float matmul (kept in L2 across the input blocks).
const L2_GROUP_BYTES: usize = 256 << 10;
/// Inputs of one block of a blocked float matmul (kept in L1 across the rows of a group).
const L1_BLOCK_BYTES: usize = 24 << 10;

/// `0..rows` in groups of rows (`row_bytes` each) that fit [`L2_GROUP_BYTES`] together.
fn row_groups(rows: usize, row_bytes: usize) -> impl Iterator<Item = Range<usize>> {
    let group = (L2_GROUP_BYTES / row_bytes.max(1)).clamp(1, rows.max(1));
    (0..rows)
        .step_by(group)
        .map(move |g| g..(g + group).min(rows))
}

/// `0..n` inputs (f32 rows of `cols` values) in blocks that fit [`L1_BLOCK_BYTES`] together.
fn input_blocks(n: usize, cols: usize) -> impl Iterator<Item = Range<usize>> {
    let block = (L1_BLOCK_BYTES / (cols * 4)).clamp(1, n.max(1));
    (0..n).step_by(block).map(move |t| t..(t + block).min(n))
}

/// Below this many weights a matrix runs on the calling thread: handing out work would cost more.
const PAR_MIN_WEIGHTS: usize = 1 << 15;
/// Smallest unit of work handed to a thread, in weights.
const CHUNK_MIN_WEIGHTS: usize = 1 << 13;

/// Runs every job into its destination (`n` outputs per row), as one parallel job when worth it.
fn run_jobs(jobs: &[RowJob], dsts: Vec<&mut [f32]>, cols: usize) {
    // Inside an engine's forward pass its team does the work; elsewhere rayon's current pool (with
    // the "threads" feature) or the calling thread.
    let team = Team::current();
    #[cfg(feature = "threads")]
    let threads = team.map_or_else(rayon::current_num_threads, |t| t.threads());
    #[cfg(not(feature = "threads"))]
    let threads = team.map_or(1, |t| t.threads());
    let per_row = jobs.first().map_or(1, |j| j.n);
    let rows: usize = jobs.iter().map(|j| j.m.rows).sum();
    if threads > 1 && rows * cols * per_row >= PAR_MIN_WEIGHTS {
        // Several chunks per thread so faster cores (big.LITTLE) claim more of them.
        let by_balance = rows.div_ceil(threads * 4);
        let by_size = CHUNK_MIN_WEIGHTS.div_ceil(cols * per_row);
        // Whole 16-row panels per chunk (harmless for the row layout).
        let chunk_rows = by_balance.max(by_size).max(1).next_multiple_of(panel::ROWS);
        let mut dsts = dsts;
        match team {
            Some(team) => team.for_each_chunk(&mut dsts, chunk_rows * per_row, |j, i, chunk| {
                jobs[j].rows_into(i * chunk_rows, chunk)
            }),
            #[cfg(feature = "threads")]
            None => {
                use rayon::prelude::*;
                let mut tasks = Vec::new();
                for (j, dst) in dsts.into_iter().enumerate() {
                    for (i, chunk) in dst.chunks_mut(chunk_rows * per_row).enumerate() {
                        tasks.push((j, i * chunk_rows, chunk));
                    }
                }
                tasks
                    .into_par_iter()
                    .for_each(|(j, r0, chunk)| jobs[j].rows_into(r0, chunk))
            }
            #[cfg(not(feature = "threads"))]
            None => unreachable!("more than one thread without a team or rayon"),
        }
        return;
    }
    for (job, dst) in jobs.iter().zip(dsts) {
        job.rows_into(0, dst);
    }
}

/// `out = W x` on the fastest path (see [`Kernels::matvec`]).
pub fn matvec(out: &mut [f32], m: &MatRef, x: &[f32], scratch: &mut Scratch) {
    Kernels::best().matvec(out, m, x, scratch)
}

/// `out[n, rows] = X[n, cols] Wᵀ` on the fastest path (see [`Kernels::matmul`]).
pub fn matmul(out: &mut [f32], m: &MatRef, x: &[f32], n: usize, scratch: &mut Scratch) {
    Kernels::best().matmul(out, m, x, n, scratch)
}

/// Several matrices sharing one input, on the fastest path (see [`Kernels::matmul_many`]).
pub fn matmul_many(
    outs: &mut [&mut [f32]],
    mats: &[MatRef],
    x: &[f32],
    n: usize,
    scratch: &mut Scratch,
) {
    Kernels::best().matmul_many(outs, mats, x, n, scratch)
}
