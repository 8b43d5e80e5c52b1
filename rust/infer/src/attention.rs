//! The KV cache and softmax attention over it.
//!
//! Keys are stored transposed in blocks of [`KEY_BLOCK`] positions ([layer][kv head][block][head_dim]
//! [KEY_BLOCK]): one query's scores against a block are then one vector multiply and add per
//! dimension, with no sum across lanes per key (that sum would cost more than the products). Values
//! keep one row per position ([layer][kv head][position][head_dim]). The attention itself, and the
//! order of its sums that every path keeps, is [`crate::kernels::attend`]'s.
use std::ops::Range;

use crate::error::{Error, Result};
use crate::kernels::attend::{Group, KvElem, KEY_BLOCK};
use crate::kernels::Kernels;
use crate::model::Model;

/// Element type of the KV cache: f32, or IEEE half (half the memory and the bytes each decode
/// step reads; keys and values are rounded to nearest on the way in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDtype {
    #[default]
    F32,
    F16,
}

impl KvDtype {
    /// Bytes of one cached value.
    pub fn size(self) -> usize {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
        }
    }

    /// Bytes the keys and values of `positions` positions of every layer take (the cache at its
    /// largest when `positions` is the context; keys are kept in whole blocks of positions).
    pub fn cache_bytes(self, config: &crate::format::ModelConfig, positions: usize) -> u64 {
        let per_position = (config.n_layer * config.kv_dim()) as u64 * self.size() as u64;
        let keys = positions.div_ceil(KEY_BLOCK) * KEY_BLOCK;
        per_position * (keys + positions) as u64
    }
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

/// Keys and values of every layer for the positions used so far (layouts in the module comment).
/// The cache grows as positions are used, up to the context (block_size): a model file may
/// declare a context far longer than any generation it will run.
pub(crate) struct KvCache {
    store: KvStore,
    /// Positions per head the store holds now (at most `max_positions`).
    positions: usize,
    /// Key blocks per head (positions rounded up to whole blocks).
    key_blocks: usize,
    /// The context length: positions never exceed it.
    max_positions: usize,
    layers: usize,
    hd: usize,
    kv_heads: usize,
}

enum KvStore {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<u16>, v: Vec<u16> },
}

/// A copy of `old` (`heads` spans of `old_span` values) with every span widened to `new_span`
/// values, the new room zeroed; an impossible size is an error, not an abort.
fn widen<T: Copy + Default>(
    old: &[T],
    heads: usize,
    old_span: usize,
    new_span: usize,
) -> Result<Vec<T>> {
    let n = heads
        .checked_mul(new_span)
        .ok_or_else(|| Error::Unsupported("the KV cache size overflows".into()))?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::Unsupported(format!(
            "cannot allocate a KV cache of {n} values for this model"
        ))
    })?;
    v.resize(n, T::default());
    if old_span > 0 {
        for (dst, src) in v.chunks_exact_mut(new_span).zip(old.chunks_exact(old_span)) {
            dst[..old_span].copy_from_slice(src);
        }
    }
    Ok(v)
}

impl KvCache {
    /// An empty cache (nothing is allocated until [`KvCache::reserve`]); a context whose full
    /// cache could not even be counted is an error.
    pub fn new(model: &Model, dtype: KvDtype) -> Result<Self> {
        let c = model.config();
        let full = [
            c.n_layer,
            c.n_kv_head,
            c.block_size.div_ceil(KEY_BLOCK) * KEY_BLOCK,
            c.head_dim(),
        ]
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b));
        if full
            .and_then(|n| n.checked_mul(2 * std::mem::size_of::<f32>()))
            .is_none()
        {
            return Err(Error::Unsupported("the KV cache size overflows".into()));
        }
        let store = match dtype {
            KvDtype::F32 => KvStore::F32 {
                k: Vec::new(),
                v: Vec::new(),
            },
            KvDtype::F16 => KvStore::F16 {
                k: Vec::new(),
                v: Vec::new(),
            },
        };
        Ok(KvCache {
            store,
            positions: 0,
            key_blocks: 0,
            max_positions: c.block_size,
            layers: c.n_layer,
            hd: c.head_dim(),
            kv_heads: c.n_kv_head,
        })
    }

    /// Makes room for positions `0..positions` (at most the context), keeping what is cached.
    /// Room grows at least twofold each time, so a generation of n tokens copies O(n) values.
    pub fn reserve(&mut self, positions: usize) -> Result<()> {
        if positions <= self.positions {
            return Ok(());
        }
        if positions > self.max_positions {
            return Err(Error::InvalidInput(format!(
                "{positions} positions exceed the context of {} tokens",
                self.max_positions
            )));
        }
        let new_positions = positions
            .max(self.positions.saturating_mul(2))
            .max(KEY_BLOCK)
            .min(self.max_positions);
        let new_blocks = new_positions.div_ceil(KEY_BLOCK);
        let heads = self.layers * self.kv_heads;
        let hd = self.hd;
        let (ok, nk) = (
            self.key_blocks * KEY_BLOCK * hd,
            new_blocks * KEY_BLOCK * hd,
        );
        let (ov, nv) = (self.positions * hd, new_positions * hd);
        self.store = match &self.store {
            KvStore::F32 { k, v } => KvStore::F32 {
                k: widen(k, heads, ok, nk)?,
                v: widen(v, heads, ov, nv)?,
            },
            KvStore::F16 { k, v } => KvStore::F16 {
                k: widen(k, heads, ok, nk)?,
                v: widen(v, heads, ov, nv)?,
            },
        };
        self.positions = new_positions;
        self.key_blocks = new_blocks;
        Ok(())
    }

    /// Positions the cache has room for now.
    pub fn capacity(&self) -> usize {
        self.positions
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
    // Half values are widened as they are read, in every path (no widened copy of the cache).
    let k = Kernels::best();
    match &cache.store {
        KvStore::F32 { k: kc, v: vc } => k.attend_f32(&group!(kc, vc), out),
        KvStore::F16 { k: kc, v: vc } => k.attend_f16(&group!(kc, vc), out),
    }
}
