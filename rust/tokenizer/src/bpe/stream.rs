//! Incremental decoding of BPE ids for streaming output.
use super::BpeTokenizer;
use crate::Result;

/// Turns ids into text one at a time, as HF `tokenizers` decodes:
///
/// - byte-level vocabularies: a token may hold part of a character (an emoji split over several
///   tokens), so the bytes of all tokens go through one buffer and each complete character leaves
///   it as soon as its last byte arrives; bytes that can no longer become a character come out as
///   U+FFFD, as `String::from_utf8_lossy` writes them (HF's `ByteLevel` decoder);
/// - SentencePiece vocabularies with byte fallback: a run of `<0xNN>` tokens is held until the
///   next other token (or [`BpeStreamDecoder::finish`]) and becomes its text when the whole run
///   is UTF-8, else one U+FFFD per byte (HF's `ByteFallback` decoder); one leading space of the
///   output is stripped (its `Strip` step).
///
/// The concatenated output equals [`BpeTokenizer::decode`] of the ids pushed so far once
/// [`BpeStreamDecoder::finish`] has flushed what is held (`decode` is this decoder run over all ids).
pub struct BpeStreamDecoder<'a> {
    tokenizer: &'a BpeTokenizer,
    skip_special: bool,
    /// No byte has been emitted or held yet (the leading-space strip applies to the first one).
    at_start: bool,
    text: String,
    /// Byte-level: bytes of an incomplete character. Byte fallback: the current run of byte tokens.
    pending: Vec<u8>,
    /// SentencePiece with byte fallback (runs of byte tokens decode as a whole).
    byte_runs: bool,
}

impl<'a> BpeStreamDecoder<'a> {
    /// `skip_special`: special tokens add nothing (as `decode(ids, skip_special=True)`).
    pub fn new(tokenizer: &'a BpeTokenizer, skip_special: bool) -> Self {
        BpeStreamDecoder {
            tokenizer,
            skip_special,
            at_start: true,
            text: String::new(),
            pending: Vec::new(),
            byte_runs: tokenizer.has_byte_runs(),
        }
    }

    /// Adds one id and returns the text it completes (empty while a character is incomplete).
    pub fn push(&mut self, id: u32) -> Result<&str> {
        let start = self.text.len();
        let Some(mut bytes) = self.tokenizer.token_bytes(id) else {
            // out of range: decode_bytes gives the error
            self.tokenizer.decode_bytes(&[id], false)?;
            return Ok(&self.text[start..]);
        };
        if self.skip_special && self.tokenizer.is_special(id) {
            bytes = &[];
        }
        if self.byte_runs {
            // skipped special tokens do not end a run (HF drops them before its decoders run)
            if let Some(b) = self.tokenizer.fallback_byte(id) {
                self.pending.push(b);
            } else if !bytes.is_empty() {
                self.flush_run();
                // tokens other than byte tokens are whole characters
                self.emit(&String::from_utf8_lossy(bytes));
            }
            return Ok(&self.text[start..]);
        }
        if self.at_start && !bytes.is_empty() {
            // as decode_bytes: one space stripped from the very start of the output
            self.at_start = false;
            if self.tokenizer.strip_leading_space && bytes[0] == b' ' {
                bytes = &bytes[1..];
            }
        }
        self.pending.extend_from_slice(bytes);
        self.drain(false);
        Ok(&self.text[start..])
    }

    /// Flushes bytes still waiting for the rest of their character (as U+FFFD) and returns what
    /// that adds to the text.
    pub fn finish(&mut self) -> &str {
        let start = self.text.len();
        if self.byte_runs {
            self.flush_run();
        } else {
            self.drain(true);
        }
        &self.text[start..]
    }

    /// Ends a run of byte tokens: its text if it is UTF-8, else one U+FFFD per byte.
    fn flush_run(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let run = std::mem::take(&mut self.pending);
        match std::str::from_utf8(&run) {
            Ok(s) => self.emit(s),
            Err(_) => self.emit(&"\u{fffd}".repeat(run.len())),
        }
    }

    /// Appends decoded text, stripping one leading space from the start of the output.
    fn emit(&mut self, mut s: &str) {
        if self.at_start && !s.is_empty() {
            self.at_start = false;
            if self.tokenizer.strip_leading_space {
                s = s.strip_prefix(' ').unwrap_or(s);
            }
        }
        self.text.push_str(s);
    }

    /// See [`crate::stream::drain_utf8`].
    fn drain(&mut self, all: bool) {
        crate::stream::drain_utf8(&mut self.pending, &mut self.text, all);
    }

    /// The vocabulary size of the tokenizer decoded with.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size()
    }

    /// Everything decoded so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Takes the text decoded so far (bytes of an incomplete character stay pending).
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}
