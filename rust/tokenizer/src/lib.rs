//! Nano's tokenizer: trie-based greedy maximum forward matching over Unicode code points.
//!
//! At each position the longest vocabulary entry that is a prefix of the remaining text is
//! emitted; a character that starts no entry becomes `<|unknown|>`, or, when the vocabulary holds
//! the 256 byte tokens `<0x00>`..`<0xFF>`, the byte tokens of its UTF-8 bytes (no text is lost).
//! Special tokens (`<|eos|>` ...) take part in matching only when the caller passes
//! `allow_special = true`.
pub mod bpe;
mod builder;
mod bytes;
pub mod chat;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod parallel;
pub mod special;
mod stream;
mod trie;
mod vocab_json;

use std::collections::HashMap;
use std::path::Path;

pub use bpe::BpeTokenizer;
pub use builder::{build_vocabulary, BuildOptions, BuildReport};
use bytes::ByteTokens;
pub use bytes::{byte_token, parse_byte_token};
pub use chat::ChatTemplate;
pub use error::{read_utf8_file, Result, TokenizerError};
pub use parallel::FlatId;
pub use stream::StreamDecoder;
use trie::{Match, Trie};

/// Crate version, for diagnostics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The name every vocabulary must contain: what characters outside the vocabulary become.
pub const UNKNOWN_TOKEN: &str = special::UNKNOWN;

/// An immutable vocabulary plus its matcher. `Send + Sync`: share it behind an `Arc`.
pub struct Tokenizer {
    itos: Vec<String>,
    special: Vec<bool>,
    stoi: HashMap<String, u32>,
    unknown_id: u32,
    max_token_chars: usize,
    trie: Trie,
    bytes: Option<ByteTokens>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("hash", &self.hash_hex())
            .finish()
    }
}

impl Tokenizer {
    /// Builds from tokens in id order and their special flags (ids are positions).
    pub fn from_tokens(tokens: Vec<String>, special: Vec<bool>) -> Result<Tokenizer> {
        let invalid = |msg: String| Err(TokenizerError::Invalid(msg));
        if tokens.len() != special.len() {
            return invalid(format!(
                "{} tokens but {} special flags",
                tokens.len(),
                special.len()
            ));
        }
        if tokens.len() >= u32::MAX as usize {
            return invalid(format!("{} tokens do not fit 32-bit ids", tokens.len()));
        }
        let mut stoi = HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return invalid(format!("token {id} is the empty string"));
            }
            if let Some(first) = stoi.insert(token.clone(), id as u32) {
                return invalid(format!(
                    "token {token:?} appears twice (ids {first} and {id})"
                ));
            }
        }
        let Some(&unknown_id) = stoi.get(UNKNOWN_TOKEN) else {
            return invalid(format!("the vocabulary has no {UNKNOWN_TOKEN} token"));
        };
        let bytes = ByteTokens::find(&tokens, &special)?;
        let is_byte = |id: usize| bytes.as_ref().is_some_and(|b| b.value(id as u32).is_some());
        // Byte tokens never match text: "<0x41>" typed by a user stays six characters.
        let max_token_chars = (0..tokens.len())
            .filter(|&id| !is_byte(id))
            .map(|id| tokens[id].chars().count())
            .max()
            .unwrap_or(0);
        let trie = Trie::new(
            tokens
                .iter()
                .zip(special.iter().copied())
                .enumerate()
                .filter(|(id, _)| !is_byte(*id))
                .map(|(id, (t, s))| (id as u32, t.as_str(), s)),
        );
        Ok(Tokenizer {
            itos: tokens,
            special,
            stoi,
            unknown_id,
            max_token_chars,
            trie,
            bytes,
        })
    }

    /// Parses and validates a vocabulary JSON document.
    pub fn from_json_str(text: &str) -> Result<Tokenizer> {
        let checked = vocab_json::parse(text)?;
        Tokenizer::from_tokens(checked.itos, checked.special)
    }

    /// Reads a vocabulary JSON file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let text = read_utf8_file(path)?;
        Tokenizer::from_json_str(&text).map_err(|e| match e {
            TokenizerError::Json(m) => TokenizerError::Json(format!("{}: {m}", path.display())),
            TokenizerError::Invalid(m) => {
                TokenizerError::Invalid(format!("{}: {m}", path.display()))
            }
            other => other,
        })
    }

    /// The vocabulary as JSON, byte-identical to the original project's `json.dumps(..., ensure_ascii=True)`.
    pub fn to_json_string(&self) -> String {
        vocab_json::serialize(&self.itos, &self.special)
    }

    /// Writes the JSON atomically (temporary file in the same directory, then rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file_name = path.file_name().ok_or_else(|| {
            TokenizerError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
            )
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let write =
            std::fs::write(&tmp, self.to_json_string()).and_then(|_| std::fs::rename(&tmp, path));
        write.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            TokenizerError::io(path, e)
        })
    }

    /// Greedy maximum-forward-match encoding on the calling thread.
    pub fn encode(&self, text: &str, allow_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_into(text, allow_special, &mut out);
        out
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode_into(&self, text: &str, allow_special: bool, out: &mut Vec<u32>) {
        self.encode_each(text, allow_special, |id| out.push(id));
    }

    /// Calls `emit` with each id of `text` in order: the matching loop behind every encode method.
    #[inline]
    pub(crate) fn encode_each(&self, text: &str, allow_special: bool, mut emit: impl FnMut(u32)) {
        let b = text.as_bytes();
        let mut pos = 0;
        while pos < b.len() {
            match self.trie.longest_match(b, pos, allow_special) {
                Match::Token(id, len) => {
                    emit(id);
                    pos += len;
                }
                Match::Unknown(len) => {
                    match &self.bytes {
                        Some(bytes) => b[pos..pos + len].iter().for_each(|&x| emit(bytes.id(x))),
                        None => emit(self.unknown_id),
                    }
                    pos += len;
                }
            }
        }
    }

    /// Concatenates the tokens' text: a byte token adds its one byte. The ids of any text decode
    /// back to exactly that text; byte sequences that are not UTF-8 (possible only in ids that no
    /// encode produced) become U+FFFD as in `String::from_utf8_lossy`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let Some(bytes) = &self.bytes else {
            let mut out = String::with_capacity(ids.len() * 3);
            for &id in ids {
                out.push_str(self.decode_one(id)?);
            }
            return Ok(out);
        };
        let mut out = Vec::with_capacity(ids.len() * 3);
        for &id in ids {
            let text = self.decode_one(id)?;
            match bytes.value(id) {
                Some(b) => out.push(b),
                None => out.extend_from_slice(text.as_bytes()),
            }
        }
        Ok(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// The token's string (a byte token's spelling `<0xHH>`), or an error for an id out of range.
    pub(crate) fn decode_one(&self, id: u32) -> Result<&str> {
        self.id_to_token(id).ok_or(TokenizerError::IdOutOfRange {
            id: u64::from(id),
            vocab_size: self.itos.len(),
        })
    }

    /// The byte a byte token stands for (`None` for every other id, and for all ids of a
    /// vocabulary without byte tokens).
    pub fn byte_value(&self, id: u32) -> Option<u8> {
        self.bytes.as_ref().and_then(|b| b.value(id))
    }

    /// Whether the vocabulary holds the 256 byte tokens, so characters outside it become bytes.
    pub fn has_byte_fallback(&self) -> bool {
        self.bytes.is_some()
    }

    /// The id of the byte token for `byte`, if the vocabulary has byte tokens.
    pub fn byte_id(&self, byte: u8) -> Option<u32> {
        self.bytes.as_ref().map(|b| b.id(byte))
    }

    pub fn vocab_size(&self) -> usize {
        self.itos.len()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.stoi.get(token).copied()
    }

    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.itos.get(id as usize).map(String::as_str)
    }

    /// Whether `id` is a special token (false for ids out of range).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Special tokens as (string, id), in id order.
    pub fn special_tokens(&self) -> Vec<(&str, u32)> {
        (0..self.itos.len() as u32)
            .filter(|&i| self.is_special(i))
            .map(|i| (self.itos[i as usize].as_str(), i))
            .collect()
    }

    /// The id characters outside the vocabulary become.
    pub fn unknown_id(&self) -> u32 {
        self.unknown_id
    }

    /// Length in code points of the longest token that can match text (byte tokens excluded).
    pub fn max_token_chars(&self) -> usize {
        self.max_token_chars
    }

    /// Tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.itos
    }

    /// FNV-1a-64 over the token list (see `hash::vocabulary_hash`), as 16 lowercase hex digits.
    pub fn hash_hex(&self) -> String {
        let h = hash::vocabulary_hash(
            self.itos
                .iter()
                .map(String::as_str)
                .zip(self.special.iter().copied()),
        );
        format!("{h:016x}")
    }
}

#[cfg(test)]
mod tests;
