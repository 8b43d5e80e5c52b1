//! Reader of GGUF, llama.cpp's model file (versions 2 and 3): the header, the metadata key-value
//! pairs, the tensor infos and the aligned data section. Little-endian throughout:
//!
//! ```text
//! "GGUF" | u32 version | u64 tensor count | u64 metadata count
//! metadata: key (u64 length + UTF-8) | u32 value type | value
//! tensor infos: name | u32 n_dims | u64 dims (innermost first) | u32 ggml type | u64 offset
//! padding to `general.alignment` (default 32), then the data; offsets are relative to its start
//! ```
//!
//! Every count and length is checked against the bytes that remain before anything is allocated,
//! so a hostile header is refused with the field it names, never a panic or a huge allocation.
//! What the tensors mean (names, shapes, types) is `gguf_model`'s job.
use std::collections::HashMap;

use crate::error::{format_err, Result};

pub const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's limit on tensor dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused (GGUF allows nesting; no model uses it).
const MAX_DEPTH: u32 = 4;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    UInt(u64),
    /// Any signed integer type.
    Int(i64),
    /// f32 or f64.
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as a non-negative integer, if it is an integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::UInt(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            Value::UInt(v) => Some(v as f64),
            Value::Int(v) => Some(v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// (values per block, bytes per block) of a ggml type.
type BlockLayout = Option<(u64, u64)>;

/// ggml tensor types: id, name, block layout when this reader knows it. Names are llama.cpp's, for
/// error messages.
const GGML_TYPES: &[(u32, &str, BlockLayout)] = &[
    (0, "F32", Some((1, 4))),
    (1, "F16", Some((1, 2))),
    (2, "Q4_0", Some((32, 18))),
    (3, "Q4_1", Some((32, 20))),
    (6, "Q5_0", Some((32, 22))),
    (7, "Q5_1", Some((32, 24))),
    (8, "Q8_0", Some((32, 34))),
    (9, "Q8_1", Some((32, 36))),
    (10, "Q2_K", Some((256, 84))),
    (11, "Q3_K", Some((256, 110))),
    (12, "Q4_K", Some((256, 144))),
    (13, "Q5_K", Some((256, 176))),
    (14, "Q6_K", Some((256, 210))),
    (15, "Q8_K", Some((256, 292))),
    (16, "IQ2_XXS", None),
    (17, "IQ2_XS", None),
    (18, "IQ3_XXS", None),
    (19, "IQ1_S", None),
    (20, "IQ4_NL", None),
    (21, "IQ3_S", None),
    (22, "IQ2_S", None),
    (23, "IQ4_XS", None),
    (24, "I8", Some((1, 1))),
    (25, "I16", Some((1, 2))),
    (26, "I32", Some((1, 4))),
    (27, "I64", Some((1, 8))),
    (28, "F64", Some((1, 8))),
    (29, "IQ1_M", None),
    (30, "BF16", Some((1, 2))),
    (34, "TQ1_0", None),
    (35, "TQ2_0", None),
    (39, "MXFP4", None),
];

pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q8_0: u32 = 8;
pub const BF16: u32 = 30;

/// llama.cpp's name of a ggml type ("type 99" when unknown).
pub fn type_name(t: u32) -> String {
    GGML_TYPES
        .iter()
        .find(|e| e.0 == t)
        .map_or_else(|| format!("type {t}"), |e| e.1.to_string())
}

/// One tensor info: the name, the dimensions innermost first (ggml's order), the ggml type and
/// the offset of its data within the data section.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub offset: u64,
}

impl TensorInfo {
    /// The shape outermost first (PyTorch's order): a ggml `[in, out]` matrix is `[out, in]`.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
    pub fn numel(&self) -> u64 {
        // the product was checked against the file size at read time
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: metadata, tensor infos, and where the data section starts.
#[derive(Debug)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// What is being read, for error messages.
    at: String,
}

impl<'a> Cursor<'a> {
    fn fail<T>(&self, msg: impl std::fmt::Display) -> Result<T> {
        format_err(format!("GGUF {}: {msg}", self.at))
    }
    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        if n > self.left() {
            return self.fail(format!(
                "the file ends inside it (truncated: {n} bytes needed at offset {}, {} left)",
                self.pos,
                self.left()
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of items of at least `min_size` bytes each, refused when they cannot fit.
    fn count(&mut self, what: &str, min_size: u64) -> Result<usize> {
        let n = self.u64()?;
        if n.saturating_mul(min_size) > self.left() {
            return self.fail(format!(
                "{what} {n} cannot fit in the {} bytes left (truncated or corrupt)",
                self.left()
            ));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.count("string length", 1)?;
        let b = self.take(n as u64)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => self.fail(format!("a string is not UTF-8 ({e})")),
        }
    }

    /// Smallest encoded size of a value of type `t` (to bound array lengths).
    fn min_size(&self, t: u32) -> Result<u64> {
        Ok(match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 | 8 => 8,
            9 => 12,
            _ => return self.fail(format!("unknown value type {t}")),
        })
    }

    fn value(&mut self, t: u32, depth: u32) -> Result<Value> {
        Ok(match t {
            0 => Value::UInt(u64::from(self.array::<1>()?[0])),
            1 => Value::Int(i64::from(self.array::<1>()?[0] as i8)),
            2 => Value::UInt(u64::from(u16::from_le_bytes(self.array()?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.array()?))),
            4 => Value::UInt(u64::from(self.u32()?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.array()?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.array()?))),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return self.fail(format!("bool byte {b} is neither 0 nor 1")),
            },
            8 => Value::Str(self.string()?),
            9 => {
                if depth >= MAX_DEPTH {
                    return self.fail(format!("arrays nested deeper than {MAX_DEPTH}"));
                }
                let elem = self.u32()?;
                let n = self.count("array length", self.min_size(elem)?)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(elem, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::UInt(self.u64()?),
            11 => Value::Int(i64::from_le_bytes(self.array()?)),
            12 => Value::Float(f64::from_le_bytes(self.array()?)),
            _ => return self.fail(format!("unknown value type {t}")),
        })
    }
}

/// Whether `bytes` start like a GGUF file.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Reads the header, metadata and tensor infos of a whole GGUF file and checks that every tensor
/// lies within the data section (for the types whose size this reader knows).
pub fn read(bytes: &[u8]) -> Result<GgufFile> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        at: "header".into(),
    };
    if c.take(4)? != MAGIC {
        return c.fail("not a GGUF file (no GGUF magic)");
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return c.fail(format!("version {version} is not supported (2 or 3)"));
    }
    // the smallest tensor info: an empty name, one dimension, type and offset
    let n_tensors = c.count("tensor count", 8 + 4 + 8 + 4 + 8)?;
    // the smallest pair: an empty key, a type and a one-byte value
    let n_meta = c.count("metadata count", 8 + 4 + 1)?;
    let mut metadata = HashMap::with_capacity(n_meta);
    for i in 0..n_meta {
        c.at = format!("metadata pair {i}");
        let key = c.string()?;
        c.at = format!("key {key:?}");
        let t = c.u32()?;
        let v = c.value(t, 0)?;
        if metadata.insert(key, v).is_some() {
            return c.fail("the key appears twice");
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 1 << 20 => a,
            _ => {
                c.at = "key \"general.alignment\"".into();
                return c.fail(format!("{v:?} is not a power of two up to 2^20"));
            }
        },
    };
    let mut tensors = Vec::with_capacity(n_tensors);
    let mut names = std::collections::HashSet::with_capacity(n_tensors);
    for i in 0..n_tensors {
        c.at = format!("tensor info {i}");
        let name = c.string()?;
        c.at = format!("tensor {name:?}");
        let n_dims = c.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return c.fail(format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"));
        }
        let dims = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
        if dims.contains(&0) {
            return c.fail(format!("dimensions {dims:?} include 0"));
        }
        let numel = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        if numel.is_none_or(|n| n > bytes.len() as u64 * 8) {
            return c.fail(format!(
                "dimensions {dims:?} hold more values than the file could"
            ));
        }
        let ggml_type = c.u32()?;
        let offset = c.u64()?;
        if !offset.is_multiple_of(alignment) {
            return c.fail(format!(
                "data offset {offset} is not a multiple of the alignment {alignment}"
            ));
        }
        if !names.insert(name.clone()) {
            return c.fail("the tensor name appears twice");
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }
    let data_offset = (c.pos as u64).next_multiple_of(alignment);
    let file = GgufFile {
        version,
        metadata,
        tensors,
        alignment,
        data_offset: data_offset.min(bytes.len() as u64) as usize,
    };
    if data_offset > bytes.len() as u64 && !file.tensors.is_empty() {
        return format_err(format!(
            "GGUF data section: the file ends at byte {} before its start at {data_offset} (truncated)",
            bytes.len()
        ));
    }
    for t in &file.tensors {
        file.byte_range(t, bytes.len())?;
    }
    Ok(file)
}

impl GgufFile {
    /// Bytes the tensor's data takes, `None` for types whose layout this reader does not know.
    pub fn nbytes(t: &TensorInfo) -> Result<Option<u64>> {
        let Some(&(_, name, layout)) = GGML_TYPES.iter().find(|e| e.0 == t.ggml_type) else {
            return Ok(None);
        };
        let Some((block, size)) = layout else {
            return Ok(None);
        };
        if !t.dims[0].is_multiple_of(block) {
            return format_err(format!(
                "GGUF tensor {:?}: rows of {} values are not whole {name} blocks of {block}",
                t.name, t.dims[0]
            ));
        }
        Ok(Some(t.numel() / block * size))
    }

    /// The range of the file's bytes holding the tensor's data (`None` for unknown types), refused
    /// when it runs past the end of the file.
    fn byte_range(&self, t: &TensorInfo, file_len: usize) -> Result<Option<(usize, usize)>> {
        let Some(n) = Self::nbytes(t)? else {
            return Ok(None);
        };
        let start = (self.data_offset as u64).checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(n));
        match (start, end) {
            (Some(s), Some(e)) if e <= file_len as u64 => Ok(Some((s as usize, e as usize))),
            _ => format_err(format!(
                "GGUF tensor {:?}: its {n} bytes at data offset {} run past the end of the file \
                 ({file_len} bytes; truncated)",
                t.name, t.offset
            )),
        }
    }

    /// The tensor's data bytes; an error names the tensor and its type when the type's layout is
    /// unknown.
    pub fn data<'a>(&self, bytes: &'a [u8], t: &TensorInfo) -> Result<&'a [u8]> {
        match self.byte_range(t, bytes.len())? {
            Some((s, e)) => Ok(&bytes[s..e]),
            None => format_err(format!(
                "GGUF tensor {:?} has type {}, which Nano does not load",
                t.name,
                type_name(t.ggml_type)
            )),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }
}
