//! Byte-pair-encoding tokenizers of the models people use, with the ids HF `tokenizers` gives:
//!
//! - byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2 ...): text split by the family's pattern
//!   ([`Pattern`]), each piece's UTF-8 bytes merged by rank;
//! - SentencePiece-style BPE (Llama 2, TinyLlama): spaces become `▁`, the text merged from its
//!   characters, characters outside the vocabulary spelled as `<0xNN>` byte tokens.
//!
//! Both load from HF `tokenizer.json` ([`BpeTokenizer::from_hf_dir`]) or GGUF metadata
//! ([`BpeTokenizer::from_gguf_file`]). Added tokens are found first (leftmost-longest); special
//! ones only when the caller allows them, otherwise their text is encoded as ordinary text.
mod added;
mod byte_level;
mod gguf;
mod hf_json;
mod merge;
mod normalize;
mod parallel;
mod pretokenize;
mod stream;
mod to_json;

use std::collections::HashMap;

use rustc_hash::FxHashMap;

pub use added::AddedToken;
use added::{AddedTokens, Segment};
pub use hf_json::HfConfig;
use merge::Merges;
pub use normalize::{Normalizer, Step, SPACE_MARK};
pub use pretokenize::{Pattern, GPT2_REGEX, LLAMA3_REGEX, QWEN2_REGEX};
pub use stream::BpeStreamDecoder;

use crate::{Result, TokenizerError};

/// How a vocabulary turns text into initial symbols.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Family {
    /// Pieces of `pattern`, as bytes spelled by GPT-2's byte characters. `add_prefix_space`: a
    /// space is put before text that does not start with one (HF `ByteLevel`'s option).
    ByteLevel {
        pattern: Pattern,
        add_prefix_space: bool,
    },
    /// The normalized text as one word of characters. `byte_fallback`: characters outside the
    /// vocabulary become their UTF-8 bytes' `<0xNN>` tokens; otherwise (or when one of those is
    /// missing) `unk_token`, runs of them fused into one when `fuse_unk`.
    SentencePiece {
        byte_fallback: bool,
        unk_token: Option<String>,
        fuse_unk: bool,
    },
}

/// Everything a BPE tokenizer is made from, whatever the file it was read from.
#[derive(Clone, Debug)]
pub struct BpeSpec {
    pub family: Family,
    pub normalizer: Normalizer,
    /// The model's vocabulary: (token, id).
    pub vocab: Vec<(String, u32)>,
    /// Merges in rank order: (left, right) tokens.
    pub merges: Vec<(String, String)>,
    pub added: Vec<AddedToken>,
    /// A piece that is itself a token is that token, whatever the merges say (Llama 3).
    pub ignore_merges: bool,
    /// The decoder strips one leading space (SentencePiece's `Strip` decoder step).
    pub strip_leading_space: bool,
    pub config: HfConfig,
}

/// Marks an absent id in the byte and character tables.
const NO_ID: u32 = u32::MAX;

enum Model {
    ByteLevel {
        pattern: Pattern,
        add_prefix_space: bool,
        /// Token of each byte's character.
        byte_ids: Box<[u32; 256]>,
        /// Pieces whose merges give exactly one token, by their bytes (with `ignore_merges`:
        /// every token). Looking a piece up here gives the same ids as merging it.
        whole: FxHashMap<Box<[u8]>, u32>,
    },
    SentencePiece {
        ascii_ids: Box<[u32; 128]>,
        char_ids: FxHashMap<char, u32>,
        /// `<0xNN>` tokens when byte fallback is on and all 256 exist.
        byte_ids: Option<Box<[u32; 256]>>,
        unk: Option<u32>,
        fuse_unk: bool,
    },
}

/// A loaded BPE tokenizer. Immutable, `Send + Sync`.
pub struct BpeTokenizer {
    model: Model,
    merges: Merges,
    normalizer: Normalizer,
    added: AddedTokens,
    added_list: Vec<AddedToken>,
    tokens: Vec<String>,
    special: Vec<bool>,
    /// What each id decodes to, concatenated; id `i` is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    stoi: HashMap<String, u32>,
    strip_leading_space: bool,
    /// Long texts may be cut after a newline that precedes a letter (see `parallel`).
    newline_cuts: bool,
    family: Family,
    config: HfConfig,
}

impl std::fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("family", &self.family)
            .field("vocab_size", &self.vocab_size())
            .field("merges", &self.merges.len())
            .finish()
    }
}

fn invalid<T>(msg: String) -> Result<T> {
    Err(TokenizerError::Invalid(msg))
}

impl BpeTokenizer {
    /// Builds and checks a tokenizer: ids dense from 0, every merge's parts and result in the
    /// vocabulary, the byte tokens a family needs present.
    pub fn from_spec(spec: BpeSpec) -> Result<BpeTokenizer> {
        let n = spec
            .vocab
            .iter()
            .map(|v| v.1)
            .chain(spec.added.iter().map(|a| a.id))
            .max()
            .map_or(0, |m| m as usize + 1);
        if n >= NO_ID as usize {
            return invalid(format!("{n} tokens do not fit 32-bit ids"));
        }
        let mut tokens: Vec<Option<String>> = vec![None; n];
        let mut stoi = HashMap::with_capacity(n);
        for (token, id) in &spec.vocab {
            if let Some(other) = stoi.insert(token.clone(), *id) {
                return invalid(format!("token {token:?} has ids {other} and {id}"));
            }
            if tokens[*id as usize].replace(token.clone()).is_some() {
                return invalid(format!("id {id} names two tokens"));
            }
        }
        let mut special = vec![false; n];
        for a in &spec.added {
            match &tokens[a.id as usize] {
                Some(t) if *t != a.content => {
                    return invalid(format!(
                        "added token {:?} has id {} of token {t:?}",
                        a.content, a.id
                    ))
                }
                Some(_) => {}
                None => {
                    if let Some(other) = stoi.insert(a.content.clone(), a.id) {
                        return invalid(format!(
                            "added token {:?} has ids {other} and {}",
                            a.content, a.id
                        ));
                    }
                    tokens[a.id as usize] = Some(a.content.clone());
                }
            }
            special[a.id as usize] = a.special;
        }
        if let Some(gap) = tokens.iter().position(Option::is_none) {
            return invalid(format!(
                "no token has id {gap} (ids must run from 0 to {})",
                n - 1
            ));
        }
        let tokens: Vec<String> = tokens.into_iter().flatten().collect();

        let mut merges = Merges::with_capacity(spec.merges.len());
        for (rank, (a, b)) in spec.merges.iter().enumerate() {
            let id = |t: &str| {
                stoi.get(t).copied().ok_or_else(|| {
                    TokenizerError::Invalid(format!(
                        "merge {rank} ({a:?} {b:?}): {t:?} is not in the vocabulary"
                    ))
                })
            };
            let merged = id(&format!("{a}{b}"))?;
            merges.insert(id(a)?, id(b)?, rank as u32, merged);
        }

        let added_ids: std::collections::HashSet<u32> = spec.added.iter().map(|a| a.id).collect();
        let mut bytes = Vec::new();
        let mut offsets = vec![0];
        let byte_fallback = matches!(
            spec.family,
            Family::SentencePiece {
                byte_fallback: true,
                ..
            }
        );
        for (id, t) in tokens.iter().enumerate() {
            let is_added = added_ids.contains(&(id as u32));
            match &spec.family {
                Family::ByteLevel { .. } if !is_added => match byte_level::decode_token(t) {
                    Some(b) => bytes.extend(b),
                    None => bytes.extend(t.as_bytes()),
                },
                Family::SentencePiece { .. } if !is_added => match byte_token(t) {
                    Some(b) if byte_fallback => bytes.push(b),
                    _ => {
                        for c in t.chars() {
                            let c = if c == SPACE_MARK { ' ' } else { c };
                            bytes.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                    }
                },
                _ => bytes.extend(t.as_bytes()),
            }
            offsets.push(bytes.len());
        }

        let model = match &spec.family {
            Family::ByteLevel {
                pattern,
                add_prefix_space,
            } => {
                let mut byte_ids = Box::new([NO_ID; 256]);
                for (b, slot) in byte_ids.iter_mut().enumerate() {
                    let c = byte_level::BYTE_TO_CHAR[b].to_string();
                    *slot = *stoi.get(&c).ok_or_else(|| {
                        TokenizerError::Invalid(format!(
                            "byte-level vocabulary lacks the token {c:?} of byte {b:#04x}"
                        ))
                    })?;
                }
                Model::ByteLevel {
                    pattern: *pattern,
                    add_prefix_space: *add_prefix_space,
                    byte_ids,
                    whole: FxHashMap::default(),
                }
            }
            Family::SentencePiece {
                byte_fallback,
                unk_token,
                fuse_unk,
            } => {
                let unk = match unk_token {
                    Some(u) => Some(*stoi.get(u).ok_or_else(|| {
                        TokenizerError::Invalid(format!(
                            "unknown token {u:?} is not in the vocabulary"
                        ))
                    })?),
                    None => None,
                };
                let mut byte_ids = Box::new([NO_ID; 256]);
                for (b, slot) in byte_ids.iter_mut().enumerate() {
                    *slot = stoi.get(&format!("<0x{b:02X}>")).copied().unwrap_or(NO_ID);
                }
                let all_bytes = byte_ids.iter().all(|&i| i != NO_ID);
                if unk.is_none() && !(*byte_fallback && all_bytes) {
                    return invalid(
                        "a SentencePiece vocabulary needs an unknown token or all 256 <0xNN> byte tokens with byte_fallback"
                            .into(),
                    );
                }
                let mut ascii_ids = Box::new([NO_ID; 128]);
                let mut char_ids = FxHashMap::default();
                for (t, id) in &spec.vocab {
                    let id = *id;
                    let mut cs = t.chars();
                    if let (Some(c), None) = (cs.next(), cs.next()) {
                        if (c as u32) < 128 {
                            ascii_ids[c as usize] = id;
                        }
                        char_ids.insert(c, id);
                    }
                }
                Model::SentencePiece {
                    ascii_ids,
                    char_ids,
                    byte_ids: (*byte_fallback && all_bytes).then_some(byte_ids),
                    unk,
                    fuse_unk: *fuse_unk,
                }
            }
        };
        let normalizer = spec.normalizer.clone();
        let added = AddedTokens::new(&spec.added, |s| normalizer.apply(s).into_owned())?;
        let newline_cuts = matches!(
            spec.family,
            Family::ByteLevel {
                add_prefix_space: false,
                ..
            }
        ) && !normalizer.steps.iter().any(|s| !matches!(s, Step::Nfc))
            && spec.added.iter().all(|a| !a.content.contains(['\r', '\n']));
        let mut tok = BpeTokenizer {
            model,
            merges,
            normalizer,
            added,
            added_list: spec.added,
            tokens,
            special,
            bytes,
            offsets,
            stoi,
            strip_leading_space: spec.strip_leading_space,
            newline_cuts,
            family: spec.family,
            config: spec.config,
        };
        tok.fill_whole(&spec.vocab, spec.ignore_merges);
        Ok(tok)
    }

    /// Fills the byte-level lookup of pieces that are one token.
    fn fill_whole(&mut self, vocab: &[(String, u32)], ignore_merges: bool) {
        let mut found = FxHashMap::default();
        let mut ids = Vec::new();
        for (t, id) in vocab {
            let Some(b) = byte_level::decode_token(t) else {
                continue;
            };
            if b.len() < 2 {
                continue;
            }
            if !ignore_merges {
                ids.clear();
                self.merge_bytes(&b, &mut ids);
                if ids != [*id] {
                    continue;
                }
            }
            found.insert(b.into_boxed_slice(), *id);
        }
        if let Model::ByteLevel { whole, .. } = &mut self.model {
            *whole = found;
        }
    }

    /// Appends the merged ids of one byte-level piece, without the whole-piece lookup.
    #[inline]
    fn merge_bytes(&self, piece: &[u8], out: &mut Vec<u32>) {
        if let Model::ByteLevel { byte_ids, .. } = &self.model {
            let start = out.len();
            out.extend(piece.iter().map(|&b| byte_ids[b as usize]));
            self.merges.apply(out, start);
        }
    }

    /// Ids of `text` on the calling thread. `allow_special`: special tokens' text becomes the
    /// special token; otherwise it is encoded as ordinary text.
    pub fn encode(&self, text: &str, allow_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_into(text, allow_special, &mut out);
        out
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode_into(&self, text: &str, allow_special: bool, out: &mut Vec<u32>) {
        self.added.split_raw(text, allow_special, |seg| match seg {
            Segment::Token(id) => out.push(id),
            Segment::Text(t) => {
                let norm = self.normalizer.apply(t);
                self.added
                    .split_normalized(&norm, allow_special, |seg| match seg {
                        Segment::Token(id) => out.push(id),
                        Segment::Text(t) => self.encode_model(t, out),
                    });
            }
        });
    }

    /// The model's ids of normalized text free of added tokens.
    fn encode_model(&self, text: &str, out: &mut Vec<u32>) {
        match &self.model {
            Model::ByteLevel {
                pattern,
                add_prefix_space,
                byte_ids,
                whole,
            } => {
                let mut piece = |p: &str| {
                    let b = p.as_bytes();
                    if b.len() == 1 {
                        out.push(byte_ids[b[0] as usize]);
                    } else if let Some(&id) = whole.get(b) {
                        out.push(id);
                    } else {
                        let start = out.len();
                        out.extend(b.iter().map(|&x| byte_ids[x as usize]));
                        self.merges.apply(out, start);
                    }
                };
                if *add_prefix_space && !text.starts_with(' ') {
                    pattern.split(&format!(" {text}"), piece);
                } else {
                    pattern.split(text, &mut piece);
                }
            }
            Model::SentencePiece {
                ascii_ids,
                char_ids,
                byte_ids,
                unk,
                fuse_unk,
            } => {
                let start = out.len();
                let mut last_unk = false;
                for c in text.chars() {
                    let id = if (c as u32) < 128 {
                        ascii_ids[c as usize]
                    } else {
                        char_ids.get(&c).copied().unwrap_or(NO_ID)
                    };
                    if id != NO_ID {
                        out.push(id);
                        last_unk = false;
                    } else if let Some(byte_ids) = byte_ids {
                        let mut buf = [0u8; 4];
                        out.extend(
                            c.encode_utf8(&mut buf)
                                .bytes()
                                .map(|b| byte_ids[b as usize]),
                        );
                        last_unk = false;
                    } else if let Some(unk) = *unk {
                        if !(*fuse_unk && last_unk) {
                            out.push(unk);
                        }
                        last_unk = true;
                    }
                }
                self.merges.apply(out, start);
            }
        }
    }

    /// The pieces a byte-level vocabulary's pattern cuts `text` into (no normalization, no
    /// added tokens); `None` for SentencePiece vocabularies, which have no pre-tokenizer.
    pub fn pre_tokenize<'t>(&self, text: &'t str) -> Option<Vec<&'t str>> {
        match &self.model {
            Model::ByteLevel { pattern, .. } => {
                let mut out = Vec::new();
                pattern.split(text, |p| out.push(p));
                Some(out)
            }
            Model::SentencePiece { .. } => None,
        }
    }

    /// What `ids` decode to, as bytes (a token may hold part of a character).
    /// `skip_special`: special tokens contribute nothing.
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let i = id as usize;
            if i >= self.tokens.len() {
                return Err(TokenizerError::IdOutOfRange {
                    id: u64::from(id),
                    vocab_size: self.tokens.len(),
                });
            }
            if skip_special && self.special[i] {
                continue;
            }
            out.extend_from_slice(&self.bytes[self.offsets[i]..self.offsets[i + 1]]);
        }
        if self.strip_leading_space && out.first() == Some(&b' ') {
            out.remove(0);
        }
        Ok(out)
    }

    /// The text of `ids`, as HF `tokenizers` decodes it: bytes that do not form UTF-8 become
    /// U+FFFD (byte-level: as `String::from_utf8_lossy`; byte fallback: one per byte of a run of
    /// byte tokens that is not UTF-8 as a whole, see [`BpeStreamDecoder`]).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if self.has_byte_runs() {
            let mut d = BpeStreamDecoder::new(self, skip_special);
            for &id in ids {
                d.push(id)?;
            }
            d.finish();
            return Ok(d.take());
        }
        let bytes = self.decode_bytes(ids, skip_special)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Whether byte tokens decode run by run (SentencePiece with byte fallback).
    pub(crate) fn has_byte_runs(&self) -> bool {
        matches!(
            self.model,
            Model::SentencePiece {
                byte_ids: Some(_),
                ..
            }
        )
    }

    /// The byte of a `<0xNN>` fallback token (None for other tokens or without byte fallback).
    pub(crate) fn fallback_byte(&self, id: u32) -> Option<u8> {
        if !self.has_byte_runs() || self.added_list.iter().any(|a| a.id == id) {
            return None;
        }
        byte_token(self.tokens.get(id as usize)?)
    }

    /// The bytes one token stands for, as decoding prints it (no leading-space strip).
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        (i < self.tokens.len()).then(|| &self.bytes[self.offsets[i]..self.offsets[i + 1]])
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The token's string as the vocabulary spells it (byte-level characters, `▁`, `<0xNN>`).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.stoi.get(token).copied()
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Added tokens (special or not) in the order the file lists them.
    pub fn added_tokens(&self) -> &[AddedToken] {
        &self.added_list
    }

    pub fn family(&self) -> &Family {
        &self.family
    }

    pub fn merge_count(&self) -> usize {
        self.merges.len()
    }

    /// Special-token names and the chat template from `tokenizer_config.json` or GGUF metadata.
    pub fn config(&self) -> &HfConfig {
        &self.config
    }
}

/// The byte of a `<0xNN>` token.
fn byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests;
