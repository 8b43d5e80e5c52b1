//! The transformer forward pass of `python/nano/model.py` (RMSNorm, interleaved-pair RoPE with
//! optional Llama 3 frequency scaling, optional q/k/v biases (Qwen2), GQA
//! attention over a KV cache holding only the KV heads, SwiGLU, tied head). All matrix products go
//! through `crate::kernels` and attention through `crate::attention`; this file does the per-element
//! work around them.
use crate::attention::{self, KvCache};
use crate::error::{Error, Result};
use crate::format::RopeScaling;
use crate::kernels::{self, MatRef, Scratch, Weights};
use crate::model::{Adapter, Lora, Model};

/// RoPE tables [positions, head_dim/2], angles computed in f64 then rounded to f32 (as the model
/// does); filled as positions are used ([`Rope::extend`]), each entry the same whenever computed.
pub(crate) struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
    theta: f64,
    scaling: Option<RopeScaling>,
    enabled: bool,
}

impl Rope {
    pub fn new(model: &Model) -> Self {
        let c = model.config();
        Rope {
            cos: Vec::new(),
            sin: Vec::new(),
            half: c.head_dim() / 2,
            theta: c.rope_theta as f64,
            scaling: c.rope_scaling.clone(),
            enabled: c.use_rope,
        }
    }

    /// Fills the tables for positions `0..positions` (the caller keeps them within the context).
    pub fn extend(&mut self, positions: usize) -> Result<()> {
        let (half, hd) = (self.half, 2 * self.half);
        let have = self.cos.len().checked_div(half).unwrap_or(0);
        if !self.enabled || positions <= have {
            return Ok(());
        }
        let more = (positions - have) * half;
        if self.cos.try_reserve(more).is_err() || self.sin.try_reserve(more).is_err() {
            return Err(Error::Unsupported(format!(
                "cannot allocate RoPE tables for {positions} positions"
            )));
        }
        for p in have..positions {
            for i in 0..half {
                let mut freq = 1.0 / self.theta.powf((2 * i) as f64 / hd as f64);
                if let Some(s) = &self.scaling {
                    freq = s.scale(freq);
                }
                let a = p as f64 * freq;
                self.cos.push(a.cos() as f32);
                self.sin.push(a.sin() as f32);
            }
        }
        Ok(())
    }

    /// Rotates pairs (2i, 2i+1) of every head in `x` (heads * head_dim values) for position `pos`.
    fn apply(&self, x: &mut [f32], pos: usize) {
        let (cos, sin) = (
            &self.cos[pos * self.half..][..self.half],
            &self.sin[pos * self.half..][..self.half],
        );
        for head in x.chunks_exact_mut(2 * self.half) {
            for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * cos[i] - x1 * sin[i];
                pair[1] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// Activation vectors reused across layers and forward passes: a fresh, zeroed vector for every
/// matrix output would cost an allocation and a memset each time, hundreds per decoded token. Old
/// contents are left in a buffer taken again: every user overwrites all of it. The engine keeps the
/// buffers of its largest prompt.
#[derive(Default)]
pub(crate) struct Buffers(Vec<Vec<f32>>);

impl Buffers {
    /// A vector of `len` values: the smallest kept one that holds them, else the largest, grown.
    fn take(&mut self, len: usize) -> Vec<f32> {
        let fits = |v: &&Vec<f32>| v.capacity() >= len;
        let best = (self.0.iter().enumerate())
            .filter(|(_, v)| fits(v))
            .min_by_key(|(_, v)| v.capacity())
            .or_else(|| self.0.iter().enumerate().max_by_key(|(_, v)| v.capacity()))
            .map(|(i, _)| i);
        let mut v = best.map_or_else(Vec::new, |i| self.0.swap_remove(i));
        v.resize(len, 0.0);
        v
    }

    fn give(&mut self, v: Vec<f32>) {
        self.0.push(v);
    }
}

/// Everything one forward call needs besides its inputs.
pub(crate) struct Forward<'a> {
    pub model: &'a Model,
    pub lora: Option<&'a Lora>,
    pub rope: &'a Rope,
    pub scratch: &'a mut Scratch,
    pub buffers: &'a mut Buffers,
}

/// RMSNorm of every row of `x` (tokens of `w.len()` values), rows spread over the team.
fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    let c = crate::sched::token_chunk(x.len() / d, d) * d;
    crate::sched::spread(out.chunks_mut(c).zip(x.chunks(c)), |(out, x)| {
        rmsnorm_rows(out, x, w, eps)
    });
}

fn rmsnorm_rows(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    for (o, xr) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let ms = xr.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64;
        let r = 1.0 / ((ms as f32) + eps).sqrt();
        for ((oi, &xi), &wi) in o.iter_mut().zip(xr).zip(w) {
            *oi = xi * r * wi;
        }
    }
}

impl Forward<'_> {
    /// Runs `tokens` at positions `start..start+n` of one sequence (all < block_size, ids < vocab:
    /// checked by the caller, who has also made room for them in the cache and the RoPE tables),
    /// filling its cache. Returns the logits of every position (`all`) or of the last one.
    pub fn run(
        &mut self,
        cache: &mut KvCache,
        tokens: &[u32],
        start: usize,
        all: bool,
    ) -> Vec<f32> {
        let n = tokens.len();
        self.run_rows(
            tokens,
            |t| start + t,
            all,
            |f, layer, xb| f.attention(cache, layer, xb, start, n),
        )
    }

    /// One decode step of several sequences at once: token `t` is the next token of the sequence
    /// whose cache is `caches[t]`, at position `positions[t]` (checked and made room for by the
    /// caller, as for [`Forward::run`]). Every matrix is read once for all of them; each row's
    /// values go through the same kernels in the same order as a one-token [`Forward::run`], so
    /// each sequence's logits do not depend on what runs beside it. Returns [n, vocab] logits.
    pub fn run_batch(
        &mut self,
        caches: &mut [&mut KvCache],
        positions: &[usize],
        tokens: &[u32],
    ) -> Vec<f32> {
        assert!(caches.len() == tokens.len() && positions.len() == tokens.len());
        self.run_rows(
            tokens,
            |t| positions[t],
            true,
            |f, layer, xb| f.attention_batch(caches, positions, layer, xb),
        )
    }

    /// The layers around attention for `tokens`, row `t` at position `pos(t)`; `attend` computes
    /// one layer's attention output ([n, n_head*head_dim]) from its normed input.
    fn run_rows(
        &mut self,
        tokens: &[u32],
        pos: impl Fn(usize) -> usize,
        all: bool,
        mut attend: impl FnMut(&mut Self, usize, &[f32]) -> Vec<f32>,
    ) -> Vec<f32> {
        let m = self.model;
        let c = m.config();
        let (n, d) = (tokens.len(), c.n_embd);
        let mut x = self.buffers.take(n * d);
        let emb = m.mat(m.tok_embeddings);
        for (row, &id) in x.chunks_exact_mut(d).zip(tokens) {
            kernels::dequantize_row(&emb, id as usize, row);
        }
        if let Some(pe) = m.pos_embeddings {
            let pe = m.mat(pe);
            let mut tmp = vec![0.0; d];
            for (t, row) in x.chunks_exact_mut(d).enumerate() {
                kernels::dequantize_row(&pe, pos(t), &mut tmp);
                row.iter_mut().zip(&tmp).for_each(|(a, b)| *a += b);
            }
        }
        let mut xb = self.buffers.take(n * d);
        for layer in 0..c.n_layer {
            let lt = m.layers[layer];
            rmsnorm(&mut xb, &x, m.vector(lt.attn_norm), c.norm_eps);
            let att = attend(self, layer, &xb);
            let [o] = self.project_many(layer, [("wo", lt.wo)], &att, n);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            self.buffers.give(att);
            self.buffers.give(o);

            rmsnorm(&mut xb, &x, m.vector(lt.ffn_norm), c.norm_eps);
            let [mut h1, h3] = self.project_many(layer, [("w1", lt.w1), ("w3", lt.w3)], &xb, n);
            let hidden = h3.len() / n;
            let ch = crate::sched::token_chunk(n, hidden);
            crate::sched::spread(
                h1.chunks_mut(ch * hidden).zip(h3.chunks(ch * hidden)),
                |(h, g)| kernels::math::silu_gate(h, g),
            );
            let [o] = self.project_many(layer, [("w2", lt.w2)], &h1, n);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            for b in [h1, h3, o] {
                self.buffers.give(b);
            }
        }
        let rows = if all { n } else { 1 };
        let last = &x[(n - rows) * d..];
        let mut normed = self.buffers.take(rows * d);
        rmsnorm(&mut normed, last, m.vector(m.norm), c.norm_eps);
        let head = m.mat(m.output);
        let mut logits = vec![0.0f32; rows * head.rows];
        kernels::matmul(&mut logits, &head, &normed, rows, self.scratch);
        for b in [x, xb, normed] {
            self.buffers.give(b);
        }
        logits
    }

    /// `x W_iᵀ` for projections of one layer that share their input (Q|K|V, W1|W3: one kernel call,
    /// so the input is quantized once and all rows form one parallel job), plus the LoRA adapter
    /// `scale · B (A x)` of each projection one targets. The adapters' `A x` products join the same
    /// kernel call (f32 matrices of `rank` rows); only the small `B` step runs afterwards.
    fn project_many<const N: usize>(
        &mut self,
        layer: usize,
        targets: [(&str, usize); N],
        x: &[f32],
        n: usize,
    ) -> [Vec<f32>; N] {
        let adapters: [Option<&Adapter>; N] = match self.lora {
            Some(lora) => targets.map(|(target, _)| lora.adapter(layer, target)),
            None => [None; N],
        };
        let mut mats: Vec<MatRef> = targets.iter().map(|&(_, i)| self.model.mat(i)).collect();
        mats.extend(adapters.iter().flatten().map(|ad| MatRef {
            rows: ad.rank(),
            cols: ad.cols,
            w: Weights::F32(&ad.a),
        }));
        let mut bufs: Vec<Vec<f32>> = mats.iter().map(|w| self.buffers.take(n * w.rows)).collect();
        let mut views: Vec<&mut [f32]> = bufs.iter_mut().map(|o| o.as_mut_slice()).collect();
        kernels::matmul_many(&mut views, &mats, x, n, self.scratch);
        let mut ax = bufs.split_off(N).into_iter();
        let scale = self.lora.map_or(0.0, |l| l.scale());
        for (out, ad) in bufs.iter_mut().zip(adapters) {
            if let Some(ad) = ad {
                let ax = ax.next().expect("one A x per adapter, in order");
                add_adapter_b(out, ad, scale, &ax);
                self.buffers.give(ax);
            }
        }
        bufs.try_into().expect("N outputs")
    }

    /// q, k and v of `n` rows of `xb`, with the model's q/k/v biases added when it has them.
    fn project_qkv(&mut self, layer: usize, xb: &[f32], n: usize) -> [Vec<f32>; 3] {
        let lt = self.model.layers[layer];
        let mut qkv =
            self.project_many(layer, [("wq", lt.wq), ("wk", lt.wk), ("wv", lt.wv)], xb, n);
        if let Some(bias) = lt.bias {
            for (out, b) in qkv.iter_mut().zip(bias) {
                let b = self.model.vector(b);
                for row in out.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(o, &b)| *o += b);
                }
            }
        }
        qkv
    }

    /// Projects q/k/v, applies RoPE, appends k/v to the cache and attends; returns [n, n_head*head_dim].
    fn attention(
        &mut self,
        cache: &mut KvCache,
        layer: usize,
        xb: &[f32],
        start: usize,
        n: usize,
    ) -> Vec<f32> {
        let m = self.model;
        let c = m.config();
        let (hd, nh, nkv) = (c.head_dim(), c.n_head, c.n_kv_head);
        let [mut q, mut k, v] = self.project_qkv(layer, xb, n);
        if c.use_rope {
            let rope = self.rope;
            let ch = crate::sched::token_chunk(n, (nh + nkv) * hd);
            let parts = q.chunks_mut(ch * nh * hd).zip(k.chunks_mut(ch * nkv * hd));
            crate::sched::spread(parts.enumerate(), |(i, (q, k))| {
                let rows = q
                    .chunks_exact_mut(nh * hd)
                    .zip(k.chunks_exact_mut(nkv * hd));
                for (t, (q, k)) in (start + i * ch..).zip(rows) {
                    rope.apply(q, t);
                    rope.apply(k, t);
                }
            });
        }
        cache.append(layer, start, &k, &v);
        let mut out = self.buffers.take(n * nh * hd);
        let cache = &*cache;
        let causal = c.is_causal;
        let group = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        // One task per (position, KV head): the query heads sharing that KV head (adjacent in `q`
        // and in `out`).
        let task = |(i, o): (usize, &mut [f32])| {
            let (t, kvh) = (i / nkv, i % nkv);
            let visible = if causal { start + t + 1 } else { start + n };
            let heads = (t * nh + kvh * group) * hd..(t * nh + (kvh + 1) * group) * hd;
            attention::attend_group(&q[heads], cache, layer, kvh, visible, scale, o);
        };
        // Multiply-adds of all heads (scores and weighted values); below ~64 K (a short decode
        // context) handing the heads to other threads costs more than it saves.
        attend_heads(
            &mut out,
            group * hd,
            n * nh * (start + n) * hd * 2 >= 1 << 16,
            task,
        );
        for b in [q, k, v] {
            self.buffers.give(b);
        }
        out
    }
}

impl Forward<'_> {
    /// [`Forward::attention`] for one decode token of each of several sequences: row `t` is at
    /// position `positions[t]` of the sequence cached in `caches[t]`. Projections run on all rows
    /// at once; RoPE, the cache append and the attention of each row are exactly the one-token
    /// path's. Returns [n, n_head*head_dim].
    fn attention_batch(
        &mut self,
        caches: &mut [&mut KvCache],
        positions: &[usize],
        layer: usize,
        xb: &[f32],
    ) -> Vec<f32> {
        let m = self.model;
        let c = m.config();
        let n = positions.len();
        let (hd, nh, nkv) = (c.head_dim(), c.n_head, c.n_kv_head);
        let [mut q, mut k, v] = self.project_qkv(layer, xb, n);
        let rows = (q.chunks_exact_mut(nh * hd))
            .zip(k.chunks_exact_mut(nkv * hd))
            .zip(v.chunks_exact(nkv * hd));
        for (((q, k), v), (cache, &pos)) in rows.zip(caches.iter_mut().zip(positions)) {
            if c.use_rope {
                self.rope.apply(q, pos);
                self.rope.apply(k, pos);
            }
            cache.append(layer, pos, k, v);
        }
        let mut out = self.buffers.take(n * nh * hd);
        let caches: Vec<&KvCache> = caches.iter().map(|c| &**c).collect();
        let group = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        // One task per (row, KV head), as in the one-sequence path; each row sees its own
        // sequence's positions up to and including its own.
        let task = |(i, o): (usize, &mut [f32])| {
            let (t, kvh) = (i / nkv, i % nkv);
            let heads = (t * nh + kvh * group) * hd..(t * nh + (kvh + 1) * group) * hd;
            let visible = positions[t] + 1;
            attention::attend_group(&q[heads], caches[t], layer, kvh, visible, scale, o);
        };
        let work: usize = positions.iter().map(|&p| nh * (p + 1) * hd * 2).sum();
        attend_heads(&mut out, group * hd, work >= 1 << 16, task);
        for b in [q, k, v] {
            self.buffers.give(b);
        }
        out
    }
}

/// Runs `task` on every `width`-value piece of `out` (with its index): over the current team (or,
/// with the "threads" feature and outside a team, rayon's pool) when `parallel` (enough work to be
/// worth handing out), else in order. The pieces are independent, so the results are the same.
fn attend_heads(
    out: &mut [f32],
    width: usize,
    parallel: bool,
    task: impl Fn((usize, &mut [f32])) + Sync + Send,
) {
    if parallel {
        match crate::sched::Team::current() {
            Some(team) if team.threads() > 1 => {
                return team.for_each_chunk(&mut [out], width, |_, i, o| task((i, o)))
            }
            Some(_) => {}
            #[cfg(feature = "threads")]
            None => {
                use rayon::prelude::*;
                return out.par_chunks_mut(width).enumerate().for_each(task);
            }
            #[cfg(not(feature = "threads"))]
            None => {}
        }
    }
    out.chunks_mut(width).enumerate().for_each(task)
}

/// out += scale · B (A x) for every input row, given `ax` = A x ([n, rank]) (the adapter stays
/// unmerged: base weights are never touched). B is kept transposed, so each rank component is one
/// contiguous multiply-add over the output row.
fn add_adapter_b(out: &mut [f32], ad: &Adapter, scale: f32, ax: &[f32]) {
    for (axr, or) in ax
        .chunks_exact(ad.rank())
        .zip(out.chunks_exact_mut(ad.rows))
    {
        for (&a, b_col) in axr.iter().zip(ad.b_t.chunks_exact(ad.rows)) {
            let s = scale * a;
            or.iter_mut().zip(b_col).for_each(|(o, &b)| *o += s * b);
        }
    }
}
