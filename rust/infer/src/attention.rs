//! The KV cache and softmax attention over it.
//!
//! Keys are stored transposed in blocks of [`KEY_BLOCK`] positions ([layer][kv head][block][head_dim]
//! [KEY_BLOCK]): one query's scores against a block are then one vector multiply and add per
//! dimension, with no sum across lanes per key (that sum cost more than the products). Values keep
//! one row per position ([layer][kv head][position][head_dim]).
//!
//! Every path (AVX-512, AVX2, the plain source on any target) computes the same bits, so native,
//! Python and WASM engines agree:
//! * a score is the 8-lane dot product: lane l adds the products of dimensions ≡ l (mod 8) in order,
//!   lanes 0..7 are then added in order, then the products of the dimensions past the last multiple
//!   of 8, and the result is multiplied by the scale;
//! * softmax: maximum, e^(s − max) with [`math::exp`], sum in 8 lanes then the tail, division;
//! * each output value adds its weighted values in key order;
//! * no multiply and add is fused.
use std::cell::Cell;
use std::ops::Range;

use crate::error::{Error, Result};
use crate::kernels;
use crate::math;
use crate::model::Model;

/// Positions per block of the transposed key layout (one AVX-512 vector of f32).
pub(crate) const KEY_BLOCK: usize = 16;

/// Element type of the KV cache: f32, or IEEE half (half the memory and the bytes each decode
/// step reads; keys and values are rounded to nearest on the way in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDtype {
    #[default]
    F32,
    F16,
}

impl std::str::FromStr for KvDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(KvDtype::F32),
            "f16" => Ok(KvDtype::F16),
            _ => Err(Error::InvalidInput(format!(
                "KV cache type must be f32 or f16, got {s:?}"
            ))),
        }
    }
}

/// Keys and values of every layer for positions 0..block_size (layouts in the module comment).
pub(crate) struct KvCache {
    store: KvStore,
    /// Positions per head (the context length).
    positions: usize,
    /// Key blocks per head (positions rounded up to whole blocks).
    key_blocks: usize,
    hd: usize,
    kv_heads: usize,
}

enum KvStore {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<u16>, v: Vec<u16> },
}

/// One cached value: stored from an f32, read back as one (exactly, for f16).
trait KvElem: Copy {
    fn store(v: f32) -> Self;
    fn load(self) -> f32;
}

impl KvElem for f32 {
    fn store(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn load(self) -> f32 {
        self
    }
}

impl KvElem for u16 {
    fn store(v: f32) -> Self {
        kernels::f32_to_f16(v)
    }
    #[inline(always)]
    fn load(self) -> f32 {
        kernels::f16_to_f32(self)
    }
}

impl KvCache {
    /// Allocates the whole cache up front; an impossible size is an error, not an abort.
    pub fn new(model: &Model, dtype: KvDtype) -> Result<Self> {
        let c = model.config();
        let key_blocks = c.block_size.div_ceil(KEY_BLOCK);
        let size = |positions: usize| {
            [c.n_layer, c.n_kv_head, positions, c.head_dim()]
                .iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b))
                .ok_or_else(|| Error::Unsupported("the KV cache size overflows".into()))
        };
        let (nk, nv) = (size(key_blocks * KEY_BLOCK)?, size(c.block_size)?);
        fn zeros<T: Clone + Default>(n: usize) -> Result<Vec<T>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| {
                Error::Unsupported(format!(
                    "cannot allocate a KV cache of {n} values for this model"
                ))
            })?;
            v.resize(n, T::default());
            Ok(v)
        }
        let store = match dtype {
            KvDtype::F32 => KvStore::F32 {
                k: zeros(nk)?,
                v: zeros(nv)?,
            },
            KvDtype::F16 => KvStore::F16 {
                k: zeros(nk)?,
                v: zeros(nv)?,
            },
        };
        Ok(KvCache {
            store,
            positions: c.block_size,
            key_blocks,
            hd: c.head_dim(),
            kv_heads: c.n_kv_head,
        })
    }

    pub fn dtype(&self) -> KvDtype {
        match self.store {
            KvStore::F32 { .. } => KvDtype::F32,
            KvStore::F16 { .. } => KvDtype::F16,
        }
    }

    /// Index of the first key value of (layer, head).
    fn key_base(&self, layer: usize, head: usize) -> usize {
        (layer * self.kv_heads + head) * self.key_blocks * KEY_BLOCK * self.hd
    }

    /// Index of the first value of (layer, head).
    fn value_base(&self, layer: usize, head: usize) -> usize {
        (layer * self.kv_heads + head) * self.positions * self.hd
    }

    /// Stores the keys and values of tokens `start..start + n` of `layer` ([n, kv_heads * head_dim]).
    pub fn append(&mut self, layer: usize, start: usize, k: &[f32], v: &[f32]) {
        let (hd, kvh) = (self.hd, self.kv_heads);
        // Row i is token start + i / kvh of head i % kvh.
        let pos = move |i: usize| start + i / kvh;
        let key_slot = {
            let (base, head_stride) = (self.key_base(layer, 0), self.key_blocks * KEY_BLOCK * hd);
            move |i: usize| {
                let p = pos(i);
                base + (i % kvh) * head_stride + (p / KEY_BLOCK) * KEY_BLOCK * hd + p % KEY_BLOCK
            }
        };
        let value_slot = {
            let (base, head_stride) = (self.value_base(layer, 0), self.positions * hd);
            move |i: usize| base + (i % kvh) * head_stride + pos(i) * hd
        };
        match &mut self.store {
            KvStore::F32 { k: kc, v: vc } => {
                put_rows(kc, k, hd, key_slot, KEY_BLOCK);
                put_rows(vc, v, hd, value_slot, 1);
            }
            KvStore::F16 { k: kc, v: vc } => {
                put_rows(kc, k, hd, key_slot, KEY_BLOCK);
                put_rows(vc, v, hd, value_slot, 1);
            }
        }
    }

    /// Index ranges of the keys (whole blocks covering `visible` positions) and of the values of
    /// `visible` positions of one KV head.
    fn spans(&self, layer: usize, head: usize, visible: usize) -> (Range<usize>, Range<usize>) {
        let kb = self.key_base(layer, head);
        let vb = self.value_base(layer, head);
        (
            kb..kb + visible.div_ceil(KEY_BLOCK) * KEY_BLOCK * self.hd,
            vb..vb + visible * self.hd,
        )
    }
}

/// Copies (converting) each `hd`-value row of `src` into `dst` from `slot(row index)` on, one value
/// every `stride`.
fn put_rows<E: KvElem>(
    dst: &mut [E],
    src: &[f32],
    hd: usize,
    slot: impl Fn(usize) -> usize,
    stride: usize,
) {
    for (i, row) in src.chunks_exact(hd).enumerate() {
        let first = slot(i);
        for (d, &s) in dst[first..].iter_mut().step_by(stride).zip(row) {
            *d = E::store(s);
        }
    }
}

/// Attention of the query heads `qs` ([group, head_dim]) that share KV head `kv_head` of `layer`,
/// over its first `visible` positions; writes [group, head_dim] into `out`.
pub(crate) fn attend_group(
    qs: &[f32],
    cache: &KvCache,
    layer: usize,
    kv_head: usize,
    visible: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (keys, values) = cache.spans(layer, kv_head, visible);
    let hd = cache.hd;
    macro_rules! group {
        ($k:expr, $v:expr) => {
            Group {
                qs,
                keys: &$k[keys],
                values: &$v[values],
                hd,
                visible,
                scale,
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY (all four): the features each path needs were detected just before it.
        if std::is_x86_feature_detected!("avx512f") {
            return match &cache.store {
                KvStore::F32 { k, v } => unsafe { x86::attend_avx512_f32(&group!(k, v), out) },
                KvStore::F16 { k, v } => unsafe { x86::attend_avx512_f16(&group!(k, v), out) },
            };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
            return match &cache.store {
                KvStore::F32 { k, v } => unsafe { x86::attend_avx2_f32(&group!(k, v), out) },
                KvStore::F16 { k, v } => unsafe { x86::attend_avx2_f16(&group!(k, v), out) },
            };
        }
    }
    // Half values are widened as they are read, in every path (no widened copy of the cache).
    match &cache.store {
        KvStore::F32 { k, v } => attend_with(&group!(k, v), out, score_block, weighted_sum_2),
        KvStore::F16 { k, v } => attend_with(&group!(k, v), out, score_block, weighted_sum_2),
    }
}

/// The inputs of one [`attend_group`] call; keys and values as cached (f32 or f16).
struct Group<'a, E> {
    qs: &'a [f32],
    keys: &'a [E],
    values: &'a [E],
    hd: usize,
    visible: usize,
    scale: f32,
}

/// The body every path shares, with the path's two vector kernels: `score(q, kb, scale, s)`, the
/// scores of one query against one key block (`kb`, [head_dim][KEY_BLOCK]); `sum2(w, values, hd, o)`,
/// the weighted sums of two heads at once for dimensions `0..c`, returning `c` (the rest is left
/// to [`weighted_sum`]).
#[inline(always)]
fn attend_with<E: KvElem>(
    g: &Group<E>,
    out: &mut [f32],
    score: impl Fn(&[f32], &[E], f32, &mut [f32; KEY_BLOCK]),
    sum2: impl Fn([&[f32]; 2], &[E], usize, [&mut [f32]; 2]) -> usize,
) {
    let (hd, visible) = (g.hd, g.visible);
    let padded = visible.div_ceil(KEY_BLOCK) * KEY_BLOCK;
    // A per-thread buffer, taken and put back (the body stays here, inlined into the path's
    // kernel): a prefill makes one call per (position, KV head), and allocating and zeroing the
    // scores each time cost ~4 % of it. Every score read is written first.
    thread_local! {
        static SCORES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    }
    let len = g.qs.len() / hd * padded;
    let mut buf = SCORES.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let scores = &mut buf[..len];
    for (qh, sc) in g.qs.chunks_exact(hd).zip(scores.chunks_exact_mut(padded)) {
        for (s, kb) in sc
            .chunks_exact_mut(KEY_BLOCK)
            .zip(g.keys.chunks_exact(hd * KEY_BLOCK))
        {
            score(qh, kb, g.scale, s.try_into().expect("one block"));
        }
        softmax(&mut sc[..visible]);
    }
    let weights = scores.chunks_exact(padded).map(|s| &s[..visible]);
    let mut heads = out.chunks_exact_mut(hd).zip(weights);
    loop {
        match (heads.next(), heads.next()) {
            (Some((o0, w0)), Some((o1, w1))) => {
                let done = sum2([w0, w1], g.values, hd, [&mut *o0, &mut *o1]);
                weighted_sum(w0, g.values, hd, done, o0);
                weighted_sum(w1, g.values, hd, done, o1);
            }
            (Some((o, w)), None) => weighted_sum(w, g.values, hd, 0, o),
            _ => break,
        }
    }
    SCORES.set(buf);
}

/// In place: e^(s − max) / Σ over the scores.
#[inline(always)]
fn softmax(scores: &mut [f32]) {
    // Maximum and sum in 8 lanes (vectorized), then across them. The maximum by comparison, which
    // skips a NaN score as `f32::max` does and is exact in any order: it compiles to one `maxps`
    // per vector, where `f32::max` took three instructions (12 % of a long prefill's attention).
    let mut lanes = [f32::NEG_INFINITY; 8];
    for c in scores.chunks_exact(8) {
        for l in 0..8 {
            if c[l] > lanes[l] {
                lanes[l] = c[l];
            }
        }
    }
    let tail = scores.chunks_exact(8).remainder();
    let mut max = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(tail) {
        if v > max {
            max = v;
        }
    }
    for s in scores.iter_mut() {
        *s = math::exp(*s - max);
    }
    let mut lanes = [0f32; 8];
    for c in scores.chunks_exact(8) {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    let tail = scores.chunks_exact(8).remainder();
    let sum = lanes.iter().chain(tail).sum::<f32>();
    for s in scores.iter_mut() {
        *s /= sum;
    }
}

/// The plain-source score kernel of [`attend_with`].
#[inline(always)]
fn score_block<E: KvElem>(qh: &[f32], kb: &[E], scale: f32, s: &mut [f32; KEY_BLOCK]) {
    let hd = qh.len();
    let full = hd / 8 * 8;
    let mut acc = [[0f32; KEY_BLOCK]; 8];
    for (qc, kc) in qh[..full]
        .chunks_exact(8)
        .zip(kb.chunks_exact(8 * KEY_BLOCK))
    {
        let k: [f32; 8 * KEY_BLOCK] = std::array::from_fn(|i| kc[i].load());
        add_products_8(&mut acc, qc.try_into().expect("8"), &k);
    }
    let mut tail = [0f32; KEY_BLOCK];
    for (&q, kr) in qh[full..]
        .iter()
        .zip(kb[full * KEY_BLOCK..].chunks_exact(KEY_BLOCK))
    {
        for j in 0..KEY_BLOCK {
            tail[j] += q * kr[j].load();
        }
    }
    let mut t = acc[0];
    for a in &acc[1..] {
        for j in 0..KEY_BLOCK {
            t[j] += a[j];
        }
    }
    for j in 0..KEY_BLOCK {
        s[j] = (t[j] + tail[j]) * scale;
    }
}

/// acc[l] += q[l] · k[l] (a row of KEY_BLOCK keys) for the 8 dimensions of one chunk.
#[inline(always)]
fn add_products_8(acc: &mut [[f32; KEY_BLOCK]; 8], q: &[f32; 8], k: &[f32; 8 * KEY_BLOCK]) {
    for l in 0..8 {
        for j in 0..KEY_BLOCK {
            acc[l][j] += q[l] * k[l * KEY_BLOCK + j];
        }
    }
}

/// The plain-source pair kernel of [`attend_with`]: leaves all dimensions to [`weighted_sum`].
fn weighted_sum_2<E>(_: [&[f32]; 2], _: &[E], _: usize, _: [&mut [f32]; 2]) -> usize {
    0
}

/// o[d] = Σ_k w[k] · values[k][d] for d in `from..hd`, keys in order.
#[inline(always)]
fn weighted_sum<E: KvElem>(w: &[f32], values: &[E], hd: usize, from: usize, o: &mut [f32]) {
    // 32 outputs at a time held in registers (four independent chains), then 8, then one by one.
    let mut c = from;
    while c + 32 <= hd {
        let mut acc = [[0f32; 8]; 4];
        for (&w, vr) in w.iter().zip(values.chunks_exact(hd)) {
            let v: [f32; 32] = std::array::from_fn(|i| vr[c + i].load());
            for j in 0..4 {
                for l in 0..8 {
                    acc[j][l] += w * v[8 * j + l];
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            o[c + 8 * j..c + 8 * j + 8].copy_from_slice(a);
        }
        c += 32;
    }
    while c + 8 <= hd {
        let mut acc = [0f32; 8];
        for (&w, vr) in w.iter().zip(values.chunks_exact(hd)) {
            let v: [f32; 8] = std::array::from_fn(|i| vr[c + i].load());
            for l in 0..8 {
                acc[l] += w * v[l];
            }
        }
        o[c..c + 8].copy_from_slice(&acc);
        c += 8;
    }
    for (d, od) in o.iter_mut().enumerate().take(hd).skip(c) {
        *od = 0.0;
        for (&w, vr) in w.iter().zip(values.chunks_exact(hd)) {
            *od += w * vr[d].load();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX-512 and AVX2 kernels: the same operations in the same order as the plain source.
    //! Each takes the path's load (`load(i)`: the vector of f32 from element i on, widened from
    //! half values for an f16 cache; exact either way).
    use super::{attend_with, Group, KEY_BLOCK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend_avx512_f32(g: &Group<f32>, out: &mut [f32]) {
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
    pub(super) unsafe fn attend_avx512_f16(g: &Group<u16>, out: &mut [f32]) {
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

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn attend_avx2_f32(g: &Group<f32>, out: &mut [f32]) {
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
    pub(super) unsafe fn attend_avx2_f16(g: &Group<u16>, out: &mut [f32]) {
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

    /// As the AVX-512 kernel, with each block in two halves of 8 keys (8 accumulators each).
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
            let term =
                |d: usize| _mm256_mul_ps(_mm256_set1_ps(*pq.add(d)), load(d * KEY_BLOCK + half));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition in the module comment, on keys in plain row layout ([visible, head_dim]).
    fn reference(q: &[f32], keys: &[f32], values: &[f32], scale: f32, o: &mut [f32]) {
        let hd = q.len();
        let dot = |k: &[f32]| {
            let full = hd / 8 * 8;
            let mut lanes = [0f32; 8];
            for d in 0..full {
                lanes[d % 8] += q[d] * k[d];
            }
            let tail: f32 = (full..hd).map(|d| q[d] * k[d]).sum();
            lanes.iter().sum::<f32>() + tail
        };
        let mut w: Vec<f32> = keys.chunks_exact(hd).map(|k| dot(k) * scale).collect();
        softmax(&mut w);
        for (d, od) in o.iter_mut().enumerate() {
            *od = 0.0;
            for (&wk, v) in w.iter().zip(values.chunks_exact(hd)) {
                *od += wk * v[d];
            }
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
        }
        fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.next()).collect()
        }
    }

    /// Keys in the blocked layout; the lanes past `visible` hold `pad` (NaN: it must not leak).
    fn blocked<E: Copy>(keys: &[E], hd: usize, pad: E) -> Vec<E> {
        let n = keys.len() / hd;
        let mut out = vec![pad; n.div_ceil(KEY_BLOCK) * KEY_BLOCK * hd];
        for (p, k) in keys.chunks_exact(hd).enumerate() {
            for (d, &x) in k.iter().enumerate() {
                out[(p / KEY_BLOCK) * KEY_BLOCK * hd + d * KEY_BLOCK + p % KEY_BLOCK] = x;
            }
        }
        out
    }

    type Path<E> = (&'static str, Box<dyn Fn(&Group<E>, &mut [f32])>);
    type Simd<E> = unsafe fn(&Group<E>, &mut [f32]);

    /// The plain path plus the given x86 paths where this CPU has their features.
    fn paths<E: KvElem + 'static>(x86_paths: Vec<(&'static str, bool, Simd<E>)>) -> Vec<Path<E>> {
        let mut v: Vec<Path<E>> = vec![(
            "plain",
            Box::new(|g, o| attend_with(g, o, score_block, weighted_sum_2)),
        )];
        for (name, detected, f) in x86_paths {
            if detected {
                // SAFETY: the path's features were detected (`detected`).
                v.push((name, Box::new(move |g, o| unsafe { f(g, o) })));
            }
        }
        v
    }

    /// Every path gives the reference's bits, for head sizes with and without tails of 8, 16 and
    /// 32, groups of one to three heads and partial key blocks; from an f32 cache and from an f16
    /// one (its values widened exactly for the reference).
    #[test]
    fn every_path_gives_the_reference_bits() {
        #[cfg(target_arch = "x86_64")]
        let (f32_paths, f16_paths) = {
            let avx512 = std::is_x86_feature_detected!("avx512f");
            let avx2 =
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c");
            (
                paths::<f32>(vec![
                    ("avx512", avx512, x86::attend_avx512_f32),
                    ("avx2", avx2, x86::attend_avx2_f32),
                ]),
                paths::<u16>(vec![
                    ("avx512", avx512, x86::attend_avx512_f16),
                    ("avx2", avx2, x86::attend_avx2_f16),
                ]),
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (f32_paths, f16_paths) = (paths::<f32>(vec![]), paths::<u16>(vec![]));
        let mut rng = Rng(7);
        for hd in [4, 8, 12, 16, 32, 40, 48, 64, 72] {
            for group in [1, 2, 3] {
                for visible in [1, 7, 16, 17, 40] {
                    let qs = rng.vec(group * hd);
                    let scale = 1.0 / (hd as f32).sqrt();
                    let (keys, values) = (rng.vec(visible * hd), rng.vec(visible * hd));
                    let want = |keys: &[f32], values: &[f32]| {
                        let mut want = vec![0f32; group * hd];
                        for (q, o) in qs.chunks_exact(hd).zip(want.chunks_exact_mut(hd)) {
                            reference(q, keys, values, scale, o);
                        }
                        want
                    };
                    let check = |name: &str, got: &[f32], want: &[f32]| {
                        let same = got
                            .iter()
                            .zip(want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{name}: hd {hd} group {group} visible {visible}");
                    };

                    let want32 = want(&keys, &values);
                    let kb = blocked(&keys, hd, f32::NAN);
                    let g = Group {
                        qs: &qs,
                        keys: &kb[..],
                        values: &values[..],
                        hd,
                        visible,
                        scale,
                    };
                    for (name, path) in &f32_paths {
                        let mut got = vec![f32::NAN; group * hd];
                        path(&g, &mut got);
                        check(name, &got, &want32);
                    }

                    let half =
                        |v: &[f32]| -> Vec<u16> { v.iter().map(|&x| u16::store(x)).collect() };
                    let wide = |v: &[u16]| -> Vec<f32> { v.iter().map(|&x| x.load()).collect() };
                    let (keys16, values16) = (half(&keys), half(&values));
                    let want16 = want(&wide(&keys16), &wide(&values16));
                    let kb16 = blocked(&keys16, hd, 0x7e00); // a half NaN in the padding
                    let g = Group {
                        qs: &qs,
                        keys: &kb16[..],
                        values: &values16[..],
                        hd,
                        visible,
                        scale,
                    };
                    for (name, path) in &f16_paths {
                        let mut got = vec![f32::NAN; group * hd];
                        path(&g, &mut got);
                        check(&format!("{name} f16"), &got, &want16);
                    }
                }
            }
        }
    }
}
