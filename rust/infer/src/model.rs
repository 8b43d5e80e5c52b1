//! A loaded, validated base model: config, tokenizer and weights (used in place from a memory map or
//! byte buffer when aligned, else copied), plus LoRA plug-ins.
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{
    self, as_slice_of, DType, FileVersion, LoraBase, LoraConfig, ModelConfig, Pod, Store, Tensor,
};
use crate::kernels::{MatRef, Weights};
use crate::tokenizer::ModelTokenizer;

/// The bytes a model was loaded from.
enum Backing {
    /// The file mapped read-only (its weights stay in the row layout).
    #[cfg(not(target_arch = "wasm32"))]
    Mmap(memmap2::Mmap),
    /// A private copy of the file in anonymous memory.
    #[cfg(not(target_arch = "wasm32"))]
    Anon(memmap2::MmapMut),
    Bytes(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Mmap(m) => m,
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Anon(m) => m,
            Backing::Bytes(b) => b,
        }
    }
    /// The bytes, when this copy is private and may be rearranged.
    fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Mmap(_) => None,
            #[cfg(not(target_arch = "wasm32"))]
            Backing::Anon(m) => Some(m),
            Backing::Bytes(b) => Some(b),
        }
    }
}

/// Indices into `Model::tensors` for one transformer block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerTensors {
    pub attn_norm: usize,
    pub wq: usize,
    pub wk: usize,
    pub wv: usize,
    pub wo: usize,
    /// Biases of q, k, v (models with `qkv_bias`).
    pub bias: Option<[usize; 3]>,
    pub ffn_norm: usize,
    pub w1: usize,
    pub w2: usize,
    pub w3: usize,
}

pub struct Model {
    backing: Backing,
    config: ModelConfig,
    tokenizer: Arc<ModelTokenizer>,
    base_hash: Option<String>,
    version: FileVersion,
    tensors: Vec<Tensor>,
    /// Per tensor: its values were rearranged into 16-row panels at load (see `kernels::panel`).
    in_panels: Vec<bool>,
    pub(crate) tok_embeddings: usize,
    pub(crate) pos_embeddings: Option<usize>,
    pub(crate) layers: Vec<LayerTensors>,
    pub(crate) norm: usize,
    pub(crate) output: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("version", &self.version)
            .finish()
    }
}

impl Model {
    /// Loads a model from its file bytes (the WASM path; natively prefer [`Model::open`]): a Nano
    /// file, a 2024.10 file or a GGUF file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Model> {
        Self::load(Backing::Bytes(bytes))
    }

    /// Reads a model file and validates it; tensor data is used in place.
    ///
    /// On Linux the bytes go into anonymous memory backed by transparent huge pages when the kernel
    /// allows it: decode streams every weight once per token, so with 4 KiB page-cache pages it takes a
    /// TLB miss every 4 KiB of weights, and a 2 MiB page removes all but one in 512 (the effect on
    /// decode speed is in docs/performance.md). Elsewhere, or if that allocation fails, the file is
    /// memory-mapped.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        #[cfg(target_os = "linux")]
        if let Some(map) = read_into_huge_pages(&file).map_err(|e| Error::io(path, e))? {
            return Self::load(Backing::Anon(map)).map_err(|e| name_gguf_file(e, path));
        }
        // SAFETY: the map is read-only; like every mmap user we rely on the file not being truncated
        // or rewritten while it is open (the exporter writes new files and renames them into place).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::load(Backing::Mmap(map)).map_err(|e| name_gguf_file(e, path))
    }

    fn load(backing: Backing) -> Result<Model> {
        if format::gguf::is_gguf(backing.bytes()) {
            // converted to a Nano file in memory, then loaded as one; the GGUF bytes go
            let nano = format::gguf_model::to_nano_file(backing.bytes())?;
            drop(backing);
            let mut model = Self::load_nano(Backing::Bytes(nano))?;
            model.version = FileVersion::Gguf;
            return Ok(model);
        }
        Self::load_nano(backing)
    }

    fn load_nano(mut backing: Backing) -> Result<Model> {
        let parsed = format::parse_model(backing.bytes())?;
        let tokenizer = ModelTokenizer::from_data(parsed.tokenizer, parsed.config.vocab_size)?;
        let mut tensors = parsed.tensors;
        for t in &mut tensors {
            copy_if_misaligned(t, backing.bytes());
        }
        let in_panels = match backing.bytes_mut() {
            Some(bytes) => tensors.iter().map(|t| pack_panels(t, bytes)).collect(),
            None => vec![false; tensors.len()],
        };
        let find = |name: &str| -> Result<usize> {
            tensors
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| Error::Format(format!("tensor {name:?} is missing")))
        };
        let config = parsed.config;
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let f = |s: &str| find(&format!("layers.{i}.{s}"));
            layers.push(LayerTensors {
                attn_norm: f("attention_norm.weight")?,
                wq: f("attention.wq.weight")?,
                wk: f("attention.wk.weight")?,
                wv: f("attention.wv.weight")?,
                wo: f("attention.wo.weight")?,
                bias: if config.qkv_bias {
                    Some([
                        f("attention.wq.bias")?,
                        f("attention.wk.bias")?,
                        f("attention.wv.bias")?,
                    ])
                } else {
                    None
                },
                ffn_norm: f("ffn_norm.weight")?,
                w1: f("feed_forward.w1.weight")?,
                w2: f("feed_forward.w2.weight")?,
                w3: f("feed_forward.w3.weight")?,
            });
        }
        let tok_embeddings = find("tok_embeddings.weight")?;
        let output = if config.tied_head {
            tok_embeddings
        } else {
            find("output.weight")?
        };
        let pos_embeddings = if config.use_rope {
            None
        } else {
            Some(find("pos_embeddings.weight")?)
        };
        Ok(Model {
            norm: find("norm.weight")?,
            tokenizer: Arc::new(tokenizer),
            base_hash: parsed.base_hash,
            version: parsed.version,
            backing,
            in_panels,
            config,
            tensors,
            tok_embeddings,
            pos_embeddings,
            layers,
            output,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Limits the context (prompt and generated tokens together) to `n` positions, below the
    /// model's own maximum: the KV cache then never grows past `n` positions, and prompts that
    /// would need more are refused as beyond the context.
    pub fn limit_context(&mut self, n: usize) -> Result<()> {
        let max = self.config.block_size;
        if n == 0 || n > max {
            return Err(Error::InvalidInput(format!(
                "the context limit must be between 1 and the model's context of {max}, got {n}"
            )));
        }
        self.config.block_size = n;
        Ok(())
    }
    pub fn tokenizer(&self) -> &Arc<ModelTokenizer> {
        &self.tokenizer
    }
    /// `nano.model.base_hash` of the weights when the exporter recorded it (None for 2024.10 files).
    pub fn base_hash(&self) -> Option<&str> {
        self.base_hash.as_deref()
    }
    pub fn version(&self) -> FileVersion {
        self.version
    }
    /// The dtype of the projection matrices (the first layer's wq), for display.
    pub fn dtype(&self) -> DType {
        self.tensors[self.layers[0].wq].dtype
    }
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// A tensor as a [rows, cols] matrix for the kernels (1-D tensors are one row).
    pub fn mat(&self, index: usize) -> MatRef<'_> {
        let t = &self.tensors[index];
        let (rows, cols) = match t.shape.as_slice() {
            [r, c] => (*r, *c),
            [c] => (1, *c),
            _ => unreachable!("validated at load: tensors are 1-D or 2-D"),
        };
        let w = match (self.weights(t), self.in_panels[index]) {
            (Weights::Q8_0 { qs, scales }, true) => Weights::Q8_0Panels { qs, scales },
            (Weights::Q4_0 { packed, scales }, true) => Weights::Q4_0Panels { packed, scales },
            (w, _) => w,
        };
        MatRef { rows, cols, w }
    }

    fn weights<'a>(&'a self, t: &'a Tensor) -> Weights<'a> {
        let n = t.numel();
        match &t.store {
            Store::F32(v) => Weights::F32(v),
            Store::F16(v) => Weights::F16(v),
            Store::Q8_0 { qs, scales } => Weights::Q8_0 { qs, scales },
            Store::Q4_0 { packed, scales } => Weights::Q4_0 { packed, scales },
            Store::File { offset, nbytes } => {
                let b = &self.backing.bytes()[*offset..offset + nbytes];
                let view = |bytes| aligned::<f32>(bytes);
                match t.dtype {
                    DType::F32 => Weights::F32(view(b)),
                    DType::F16 => Weights::F16(aligned(b)),
                    DType::Q8_0 => Weights::Q8_0 {
                        qs: aligned(&b[..n]),
                        scales: view(&b[n..]),
                    },
                    DType::Q4_0 => Weights::Q4_0 {
                        packed: &b[..n / 2],
                        scales: view(&b[n / 2..]),
                    },
                }
            }
        }
    }

    /// A 1-D f32 tensor (norm weights are always f32).
    pub(crate) fn vector(&self, index: usize) -> &[f32] {
        match self.mat(index).w {
            Weights::F32(v) => v,
            _ => unreachable!("validated at load: 1-D tensors are f32"),
        }
    }
}

/// Puts the file's name before the reason a GGUF file was refused (its messages name the key or
/// tensor; Nano files are named by their callers as before).
#[cfg(not(target_arch = "wasm32"))]
fn name_gguf_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Format(m) if m.starts_with("GGUF") => {
            Error::Format(format!("{}: {m}", path.display()))
        }
        e => e,
    }
}

/// Views checked-aligned file bytes (checked once at load by [`copy_if_misaligned`]).
fn aligned<T: Pod>(bytes: &[u8]) -> &[T] {
    as_slice_of(bytes).expect("alignment checked at load")
}

/// Rearranges a file-backed q8_0 / q4_0 matrix into 16-row panels in place when the fastest kernel
/// path has panel kernels and the shape allows; returns whether it did.
fn pack_panels(t: &Tensor, bytes: &mut [u8]) -> bool {
    use crate::kernels::{panel, Kernels, QK};
    let (Store::File { offset, nbytes }, [rows, cols]) = (&t.store, t.shape.as_slice()) else {
        return false;
    };
    let (rows, cols) = (*rows, *cols);
    let q4 = match t.dtype {
        DType::Q8_0 => false,
        DType::Q4_0 => true,
        _ => return false,
    };
    if !rows.is_multiple_of(panel::ROWS) || !Kernels::best().prefers_panels(q4) {
        return false;
    }
    let values = if q4 { rows * cols / 2 } else { rows * cols };
    let (vals, scales) = bytes[*offset..offset + nbytes].split_at_mut(values);
    if q4 {
        panel::pack_q4_values(vals, rows, cols);
    } else {
        panel::pack_q8_values(vals, rows, cols);
    }
    // Scales move as whole 4-byte values, so their byte order does not matter.
    let (words, _) = scales.as_chunks_mut::<4>();
    panel::pack_scales(words, rows, cols / QK);
    true
}

/// The whole file in private anonymous memory advised to use huge pages; `None` when such memory
/// cannot be had (the caller then maps the file).
#[cfg(target_os = "linux")]
fn read_into_huge_pages(file: &std::fs::File) -> std::io::Result<Option<memmap2::MmapMut>> {
    use std::io::Read;
    let len = file.metadata()?.len();
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    if len == 0 {
        return Ok(None);
    }
    let Ok(mut anon) = memmap2::MmapOptions::new().len(len).map_anon() else {
        return Ok(None);
    };
    // Only a hint: without transparent huge pages the copy still works with normal pages.
    let _ = anon.advise(memmap2::Advice::HugePage);
    let mut reader = file;
    reader.read_exact(&mut anon)?;
    Ok(Some(anon))
}

/// Tensors are used in place when their bytes are aligned for their element type; otherwise (a byte
/// buffer with an unusual address) they are copied into owned, aligned memory once.
fn copy_if_misaligned(t: &mut Tensor, bytes: &[u8]) {
    let Store::File { offset, nbytes } = t.store else {
        return;
    };
    let b = &bytes[offset..offset + nbytes];
    let n = t.numel();
    let ok = match t.dtype {
        DType::F32 => as_slice_of::<f32>(b).is_some(),
        DType::F16 => as_slice_of::<u16>(b).is_some(),
        DType::Q8_0 => as_slice_of::<f32>(&b[n..]).is_some(),
        DType::Q4_0 => as_slice_of::<f32>(&b[n / 2..]).is_some(),
    };
    if ok {
        return;
    }
    let f32s = |b: &[u8]| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    t.store = match t.dtype {
        DType::F32 => Store::F32(f32s(b)),
        DType::F16 => Store::F16(
            b.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        DType::Q8_0 => Store::Q8_0 {
            qs: b[..n].iter().map(|&q| q as i8).collect(),
            scales: f32s(&b[n..]),
        },
        DType::Q4_0 => Store::Q4_0 {
            packed: b[..n / 2].to_vec(),
            scales: f32s(&b[n / 2..]),
        },
    };
}

/// A loaded LoRA plug-in: per layer and target, A [rank, in] and B [out, rank] in f32.
#[derive(Debug)]
pub struct Lora {
    pub config: LoraConfig,
    pub base: LoraBase,
    pub version: FileVersion,
    /// (layer, target name e.g. "wq") -> (A, B)
    pub(crate) adapters: Vec<Adapter>,
}

#[derive(Debug)]
pub(crate) struct Adapter {
    pub layer: usize,
    pub target: String,
    /// A: [rank, cols].
    pub a: Vec<f32>,
    /// B transposed: [rank, rows] (the file holds B as [rows, rank]); column k of B is contiguous.
    pub b_t: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl Adapter {
    pub fn rank(&self) -> usize {
        self.a.len() / self.cols
    }
}

impl Lora {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Lora> {
        let parsed = format::parse_lora(&bytes)?;
        let mut adapters = Vec::new();
        let take = |name: &str| parsed.tensors.iter().find(|t| t.0 == name);
        for i in 0..parsed.base.n_layer {
            for target in &parsed.config.targets {
                let module = format::lora_module(target).expect("validated target");
                let (Some(a), Some(b)) = (
                    take(&format!("layers.{i}.{module}.lora_A")),
                    take(&format!("layers.{i}.{module}.lora_B")),
                ) else {
                    return Err(Error::Format(format!(
                        "LoRA tensors of layer {i} {target} are missing"
                    )));
                };
                let (rows, rank) = (b.1[0], b.1[1]);
                let mut b_t = vec![0f32; rows * rank];
                for (r, b_row) in b.2.chunks_exact(rank).enumerate() {
                    for (k, &v) in b_row.iter().enumerate() {
                        b_t[k * rows + r] = v;
                    }
                }
                adapters.push(Adapter {
                    layer: i,
                    target: target.clone(),
                    rows,
                    cols: a.1[1],
                    a: a.2.clone(),
                    b_t,
                });
            }
        }
        Ok(Lora {
            config: parsed.config,
            base: parsed.base,
            version: parsed.version,
            adapters,
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<Path>) -> Result<Lora> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(bytes)
    }

    /// alpha / rank: the factor on B (A x).
    /// The adapter of projection `target` ("wq", "w1", ...) in `layer`, if this plug-in has one.
    pub(crate) fn adapter(&self, layer: usize, target: &str) -> Option<&Adapter> {
        self.adapters
            .iter()
            .find(|a| a.layer == layer && a.target == target)
    }

    pub fn scale(&self) -> f32 {
        self.config.alpha / self.config.rank as f32
    }

    /// Refuses a plug-in trained on another base: shape always, hash whenever both sides record one.
    pub fn check_base(&self, model: &Model) -> Result<()> {
        let mine = LoraBase::of(model.config(), model.base_hash().map(str::to_string));
        if !self.base.same_shape(&mine) {
            return Err(Error::Unsupported(format!(
                "LoRA plug-in belongs to another base: it expects n_layer={} n_embd={} n_head={} n_kv_head={} n_hidden={}, the model has {} {} {} {} {}",
                self.base.n_layer, self.base.n_embd, self.base.n_head, self.base.n_kv_head, self.base.n_hidden,
                mine.n_layer, mine.n_embd, mine.n_head, mine.n_kv_head, mine.n_hidden
            )));
        }
        if let (Some(want), Some(have)) = (&self.base.hash, &mine.hash) {
            if want != have {
                return Err(Error::Unsupported(format!(
                    "LoRA plug-in belongs to another base: base hash {want}, this model's hash is {have}"
                )));
            }
        }
        Ok(())
    }
}
