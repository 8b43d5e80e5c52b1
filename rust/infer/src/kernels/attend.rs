//! Softmax attention of a group of query heads over one KV head's cached keys and values: the
//! portable body every path shares ([`attend_with`]) and its plain-source vector kernels; the
//! instruction-set paths (`x86/avx2.rs`, `x86/avx512.rs`) supply their own score and weighted-sum
//! kernels as entries of the kernel table ([`super::Kernels`]).
//!
//! Keys come transposed in blocks of [`KEY_BLOCK`] positions ([block][head_dim][KEY_BLOCK]): one
//! query's scores against a block are then one vector multiply and add per dimension, with no sum
//! across lanes per key. Values keep one row per position ([position][head_dim]).
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

use super::math;

/// Positions per block of the transposed key layout (one AVX-512 vector of f32).
pub(crate) const KEY_BLOCK: usize = 16;

/// One cached value: stored from an f32, read back as one (exactly, for f16).
pub(crate) trait KvElem: Copy {
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
        super::f32_to_f16(v)
    }
    #[inline(always)]
    fn load(self) -> f32 {
        super::f16_to_f32(self)
    }
}

/// The inputs of one attention call: the query heads `qs` ([group, head_dim]) that share one KV
/// head, its keys (whole blocks) and values as cached (f32 or f16), and the first `visible` positions
/// to attend to.
pub(crate) struct Group<'a, E> {
    pub qs: &'a [f32],
    pub keys: &'a [E],
    pub values: &'a [E],
    pub hd: usize,
    pub visible: usize,
    pub scale: f32,
}

/// The body every path shares, with the path's two vector kernels: `score(q, kb, scale, s)`, the
/// scores of one query against one key block (`kb`, [head_dim][KEY_BLOCK]); `sum2(w, values, hd, o)`,
/// the weighted sums of two heads at once for dimensions `0..c`, returning `c` (the rest is left
/// to [`weighted_sum`]).
#[inline(always)]
pub(crate) fn attend_with<E: KvElem>(
    g: &Group<E>,
    out: &mut [f32],
    score: impl Fn(&[f32], &[E], f32, &mut [f32; KEY_BLOCK]),
    sum2: impl Fn([&[f32]; 2], &[E], usize, [&mut [f32]; 2]) -> usize,
) {
    let (hd, visible) = (g.hd, g.visible);
    let padded = visible.div_ceil(KEY_BLOCK) * KEY_BLOCK;
    // A per-thread buffer, taken and put back (the body stays here, inlined into the path's
    // kernel): a prefill makes one call per (position, KV head), so no allocation or zeroing per
    // call. Every score read is written first.
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
    // per vector, where `f32::max` takes three instructions (its NaN handling).
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
        add_products_8(&mut acc, qc.try_into().expect("8"), kc);
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

/// acc[l] += q[l] · k[l] (a row of KEY_BLOCK keys) for the 8 dimensions of one chunk. The keys are
/// read where they lie: a copy into an array first was not optimised away on wasm32, where that
/// copy took about a third of the attention's time.
#[inline(always)]
fn add_products_8<E: KvElem>(acc: &mut [[f32; KEY_BLOCK]; 8], q: &[f32; 8], k: &[E]) {
    let k = &k[..8 * KEY_BLOCK];
    for l in 0..8 {
        let row = &k[l * KEY_BLOCK..(l + 1) * KEY_BLOCK];
        for j in 0..KEY_BLOCK {
            acc[l][j] += q[l] * row[j].load();
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
            let v = &vr[c..c + 32];
            for j in 0..4 {
                for l in 0..8 {
                    acc[j][l] += w * v[8 * j + l].load();
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
            let v = &vr[c..c + 8];
            for l in 0..8 {
                acc[l] += w * v[l].load();
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

/// The plain-source path: [`attend_with`] with the portable kernels (the compiler vectorizes them
/// for the target it builds for).
pub(crate) fn attend_plain<E: KvElem>(g: &Group<E>, out: &mut [f32]) {
    attend_with(g, out, score_block, weighted_sum_2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Kernels;

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

    /// Every path gives the reference's bits, for head sizes with and without tails of 8, 16 and
    /// 32, groups of one to three heads and partial key blocks; from an f32 cache and from an f16
    /// one (its values widened exactly for the reference).
    #[test]
    fn every_path_gives_the_reference_bits() {
        let paths = Kernels::available();
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
                    for k in &paths {
                        let mut got = vec![f32::NAN; group * hd];
                        k.attend_f32(&g, &mut got);
                        check(k.name(), &got, &want32);
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
                    for k in &paths {
                        let mut got = vec![f32::NAN; group * hd];
                        k.attend_f16(&g, &mut got);
                        check(&format!("{} f16", k.name()), &got, &want16);
                    }
                }
            }
        }
    }
}
