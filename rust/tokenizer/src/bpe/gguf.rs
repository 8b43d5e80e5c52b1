//! Reading a tokenizer from the metadata of a GGUF file (`tokenizer.ggml.*`). Only the header
//! and the key-value section are read, never the tensors.
//!
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE; tokens, merges ("left right") and the
//!   pre-tokenizer name (`tokenizer.ggml.pre`: `gpt-2`, `llama-bpe`/`llama3`, `qwen2`).
//! - `tokenizer.ggml.model = "llama"`: SentencePiece BPE; tokens and scores, no merges. The
//!   merges are derived as HF's converter derives them from a SentencePiece model: every split of
//!   a token into two tokens is a merge, ranked by the token's score (highest first; among one
//!   token's splits, by the parts' ids).
//!
//! Token types (`tokenizer.ggml.token_type`): 3 (control) are special added tokens, 4 (user
//! defined) added non-special ones, 6 the `<0xNN>` byte tokens.
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::normalize::{Normalizer, Step, SPACE_MARK};
use super::{AddedToken, BpeSpec, BpeTokenizer, Family, HfConfig, Pattern};
use crate::{Result, TokenizerError};

/// A metadata value (only the kinds the tokenizer keys use are kept whole).
#[derive(Debug)]
enum Meta {
    Str(String),
    Int(i64),
    Bool(bool),
    Strs(Vec<String>),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    /// A value of some other kind, skipped over.
    Other,
}

struct Reader<R> {
    r: R,
    /// Bytes left in the file, to refuse lengths that cannot fit before allocating them.
    left: u64,
    /// The key being read, for error messages.
    key: String,
}

impl<R: Read> Reader<R> {
    fn fail<T>(&self, msg: impl std::fmt::Display) -> Result<T> {
        let at = if self.key.is_empty() {
            "header".to_string()
        } else {
            format!("key {:?}", self.key)
        };
        Err(TokenizerError::Invalid(format!("{at}: {msg}")))
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        if self.left < N as u64 || self.r.read_exact(&mut buf).is_err() {
            return self.fail("the file ends inside it (truncated)");
        }
        self.left -= N as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn len(&mut self, unit: u64) -> Result<usize> {
        let n = self.u64()?;
        if n.saturating_mul(unit) > self.left {
            return self.fail(format!("length {n} runs past the end of the file"));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String> {
        let n = self.len(1)?;
        let mut buf = vec![0u8; n];
        if self.r.read_exact(&mut buf).is_err() {
            return self.fail("the file ends inside it (truncated)");
        }
        self.left -= n as u64;
        String::from_utf8(buf).or_else(|e| self.fail(format!("string is not UTF-8 ({e})")))
    }

    /// Size in bytes of one scalar of GGUF type `t`, `None` for strings and arrays.
    fn scalar_size(&self, t: u32) -> Result<Option<u64>> {
        Ok(match t {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            8 | 9 => None,
            _ => return self.fail(format!("unknown value type {t}")),
        })
    }

    fn scalar(&mut self, t: u32) -> Result<Meta> {
        Ok(match t {
            0 => Meta::Int(i64::from(self.bytes::<1>()?[0])),
            1 => Meta::Int(i64::from(self.bytes::<1>()?[0] as i8)),
            2 => Meta::Int(i64::from(u16::from_le_bytes(self.bytes()?))),
            3 => Meta::Int(i64::from(i16::from_le_bytes(self.bytes()?))),
            4 => Meta::Int(i64::from(self.u32()?)),
            5 => Meta::Int(i64::from(i32::from_le_bytes(self.bytes()?))),
            6 => {
                self.bytes::<4>()?;
                Meta::Other
            }
            7 => Meta::Bool(self.bytes::<1>()?[0] != 0),
            8 => Meta::Str(self.string()?),
            10 => Meta::Int(self.u64()? as i64),
            11 => Meta::Int(i64::from_le_bytes(self.bytes()?)),
            12 => {
                self.bytes::<8>()?;
                Meta::Other
            }
            _ => return self.fail(format!("unexpected value type {t}")),
        })
    }

    fn value(&mut self, t: u32) -> Result<Meta> {
        if t != 9 {
            return self.scalar(t);
        }
        let elem = self.u32()?;
        let unit = self.scalar_size(elem)?;
        let n = self.len(unit.unwrap_or(8))?;
        match elem {
            8 => (0..n)
                .map(|_| self.string())
                .collect::<Result<_>>()
                .map(Meta::Strs),
            6 => (0..n)
                .map(|_| Ok(f32::from_le_bytes(self.bytes()?)))
                .collect::<Result<_>>()
                .map(Meta::Floats),
            0..=5 | 10 | 11 => (0..n)
                .map(|_| match self.scalar(elem)? {
                    Meta::Int(i) => Ok(i),
                    _ => unreachable!("integer types give integers"),
                })
                .collect::<Result<_>>()
                .map(Meta::Ints),
            _ => {
                for _ in 0..n {
                    self.value(elem)?;
                }
                Ok(Meta::Other)
            }
        }
    }
}

/// The `tokenizer.*` metadata of a GGUF stream of `size` bytes.
fn read_metadata(r: impl Read, size: u64) -> Result<HashMap<String, Meta>> {
    let mut rd = Reader {
        r,
        left: size,
        key: String::new(),
    };
    if &rd.bytes::<4>()? != b"GGUF" {
        return rd.fail("not a GGUF file (no GGUF magic)");
    }
    let version = rd.u32()?;
    if !(2..=3).contains(&version) {
        return rd.fail(format!("GGUF version {version} is not supported (2 or 3)"));
    }
    let _tensors = rd.u64()?;
    let count = rd.u64()?;
    let mut out = HashMap::new();
    for _ in 0..count {
        rd.key.clear();
        let key = rd.string()?;
        rd.key = key.clone();
        let t = rd.u32()?;
        let v = rd.value(t)?;
        if key.starts_with("tokenizer.") {
            out.insert(key, v);
        }
    }
    Ok(out)
}

fn missing<T>(key: &str) -> Result<T> {
    Err(TokenizerError::Invalid(format!(
        "key {key:?} is missing or of the wrong type"
    )))
}

fn strs<'a>(m: &'a HashMap<String, Meta>, key: &str) -> Result<&'a [String]> {
    match m.get(key) {
        Some(Meta::Strs(v)) => Ok(v),
        _ => missing(key),
    }
}

fn token_id(m: &HashMap<String, Meta>, key: &str, tokens: &[String]) -> Result<Option<String>> {
    match m.get(key) {
        None => Ok(None),
        Some(Meta::Int(i)) => match usize::try_from(*i).ok().and_then(|i| tokens.get(i)) {
            Some(t) => Ok(Some(t.clone())),
            None => Err(TokenizerError::Invalid(format!(
                "key {key:?}: id {i} is outside the {} tokens",
                tokens.len()
            ))),
        },
        Some(_) => missing(key),
    }
}

/// Merges of a SentencePiece vocabulary, derived from the scores (see the module comment).
fn derive_merges(
    tokens: &[String],
    scores: &[f32],
    ids: &HashMap<&str, u32>,
) -> Vec<(String, String)> {
    let mut merges: Vec<(f32, String, String)> = Vec::new();
    for (t, &score) in tokens.iter().zip(scores) {
        let mut local: Vec<(u32, u32, &str, &str)> = t
            .char_indices()
            .skip(1)
            .filter_map(|(k, _)| {
                let (l, r) = t.split_at(k);
                Some((*ids.get(l)?, *ids.get(r)?, l, r))
            })
            .collect();
        local.sort_by_key(|&(a, b, _, _)| (a, b));
        merges.extend(
            local
                .into_iter()
                .map(|(_, _, l, r)| (score, l.to_string(), r.to_string())),
        );
    }
    // Stable: equal scores keep token order, then the parts' order.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    merges.into_iter().map(|(_, l, r)| (l, r)).collect()
}

fn spec_from_metadata(m: &HashMap<String, Meta>) -> Result<BpeSpec> {
    let model = match m.get("tokenizer.ggml.model") {
        Some(Meta::Str(s)) => s.as_str(),
        _ => return missing("tokenizer.ggml.model"),
    };
    let tokens = strs(m, "tokenizer.ggml.tokens")?;
    let types: Vec<i64> = match m.get("tokenizer.ggml.token_type") {
        Some(Meta::Ints(v)) if v.len() == tokens.len() => v.clone(),
        Some(_) => return missing("tokenizer.ggml.token_type"),
        None => vec![1; tokens.len()],
    };
    let mut ids: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        // The first of duplicate spellings keeps its id (unused slots repeat names).
        ids.entry(t.as_str()).or_insert(i as u32);
    }
    let mut vocab = Vec::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (i, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
        if ids.get(t.as_str()) != Some(&(i as u32)) {
            return Err(TokenizerError::Invalid(format!(
                "key \"tokenizer.ggml.tokens\": {t:?} appears twice (ids {} and {i})",
                ids[t.as_str()]
            )));
        }
        vocab.push((t.clone(), i as u32));
        if ty == 3 || ty == 4 {
            added.push(AddedToken {
                id: i as u32,
                content: t.clone(),
                special: ty == 3,
                normalized: false,
            });
        }
    }
    let bool_key = |key: &str, default: bool| match m.get(key) {
        Some(Meta::Bool(b)) => *b,
        _ => default,
    };
    let config = HfConfig {
        bos_token: token_id(m, "tokenizer.ggml.bos_token_id", tokens)?,
        eos_token: token_id(m, "tokenizer.ggml.eos_token_id", tokens)?,
        pad_token: token_id(m, "tokenizer.ggml.padding_token_id", tokens)?,
        unk_token: token_id(m, "tokenizer.ggml.unknown_token_id", tokens)?,
        add_bos_token: match m.get("tokenizer.ggml.add_bos_token") {
            Some(Meta::Bool(b)) => Some(*b),
            _ => None,
        },
        chat_template: match m.get("tokenizer.chat_template") {
            Some(Meta::Str(s)) => Some(s.clone()),
            _ => None,
        },
    };
    match model {
        "gpt2" => {
            let pre = match m.get("tokenizer.ggml.pre") {
                Some(Meta::Str(s)) => s.as_str(),
                _ => "default",
            };
            let pattern = match pre {
                "gpt-2" | "gpt2" => Pattern::Gpt2,
                "llama-bpe" | "llama3" => Pattern::Llama3,
                "qwen2" => Pattern::Qwen2,
                other => {
                    return Err(TokenizerError::Invalid(format!(
                        "key \"tokenizer.ggml.pre\": pre-tokenizer {other:?} is not supported (gpt-2, llama-bpe, qwen2)"
                    )))
                }
            };
            let merges = strs(m, "tokenizer.ggml.merges")?
                .iter()
                .enumerate()
                .map(|(i, s)| match s.split_once(' ') {
                    Some((a, b)) if !b.contains(' ') => Ok((a.to_string(), b.to_string())),
                    _ => Err(TokenizerError::Invalid(format!(
                        "key \"tokenizer.ggml.merges\": entry {i} {s:?} is not \"left right\""
                    ))),
                })
                .collect::<Result<_>>()?;
            Ok(BpeSpec {
                family: Family::ByteLevel {
                    pattern,
                    add_prefix_space: false,
                },
                normalizer: Normalizer::default(),
                vocab,
                merges,
                added,
                // llama.cpp (and Llama 3's tokenizer.json) take a piece that is a token whole.
                ignore_merges: pattern == Pattern::Llama3,
                strip_leading_space: false,
                config,
            })
        }
        "llama" => {
            let scores: Vec<f32> = match m.get("tokenizer.ggml.scores") {
                Some(Meta::Floats(v)) if v.len() == tokens.len() => v.clone(),
                _ => return missing("tokenizer.ggml.scores"),
            };
            // Only ordinary pieces (and user-defined ones) form merges, as in a SentencePiece model.
            let mergeable: HashMap<&str, u32> = ids
                .iter()
                .filter(|(_, &i)| matches!(types[i as usize], 1 | 4))
                .map(|(&t, &i)| (t, i))
                .collect();
            let merges = derive_merges(tokens, &scores, &mergeable);
            let mut steps = Vec::new();
            if bool_key("tokenizer.ggml.add_space_prefix", true) {
                steps.push(Step::Prepend(SPACE_MARK.to_string()));
            }
            steps.push(Step::Replace {
                pattern: " ".into(),
                content: SPACE_MARK.to_string(),
            });
            let byte_fallback = types.contains(&6);
            Ok(BpeSpec {
                family: Family::SentencePiece {
                    byte_fallback,
                    unk_token: config.unk_token.clone(),
                    fuse_unk: true,
                },
                normalizer: Normalizer { steps },
                vocab,
                merges,
                added,
                ignore_merges: false,
                strip_leading_space: true,
                config,
            })
        }
        other => Err(TokenizerError::Invalid(format!(
            "key \"tokenizer.ggml.model\": tokenizer model {other:?} is not supported (gpt2, llama)"
        ))),
    }
}

impl BpeSpec {
    /// From the tokenizer metadata of a whole GGUF file held in memory (the model loader's case:
    /// the file is read once for its tensors too).
    pub fn from_gguf_bytes(bytes: &[u8]) -> Result<BpeSpec> {
        spec_from_metadata(&read_metadata(bytes, bytes.len() as u64)?)
    }
}

impl BpeTokenizer {
    /// From the tokenizer metadata of a GGUF file.
    pub fn from_gguf_file(path: impl AsRef<Path>) -> Result<BpeTokenizer> {
        let path = path.as_ref();
        let in_file = |e: TokenizerError| match e {
            TokenizerError::Invalid(m) => {
                TokenizerError::Invalid(format!("{}: {m}", path.display()))
            }
            other => other,
        };
        let file = File::open(path).map_err(|e| TokenizerError::io(path, e))?;
        let size = file
            .metadata()
            .map_err(|e| TokenizerError::io(path, e))?
            .len();
        let meta = read_metadata(BufReader::with_capacity(1 << 20, file), size).map_err(in_file)?;
        BpeTokenizer::from_spec(spec_from_metadata(&meta).map_err(in_file)?).map_err(in_file)
    }
}
