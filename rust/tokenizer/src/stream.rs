//! Incremental decoding for streaming output.
use crate::{Result, Tokenizer};

/// Turns ids into text one at a time; the decoder also keeps the full text so far.
///
/// An ordinary token is whole code points and is printable as soon as its id arrives. Byte tokens
/// are held back until they complete a character, which is then emitted whole; bytes that can no
/// longer become a character are emitted as U+FFFD. The text therefore always equals
/// [`Tokenizer::decode`] of the ids pushed so far, except for an incomplete character at the end,
/// which [`StreamDecoder::finish`] flushes.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    text: String,
    /// Bytes of byte tokens that do not yet form a character (at most 3).
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder that emits every token, special ones included.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            skip_special: false,
            text: String::new(),
            pending: Vec::new(),
        }
    }

    /// A decoder that emits nothing for special tokens (`<|eos|>` etc.), for chat output.
    pub fn skipping_special(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            skip_special: true,
            ..StreamDecoder::new(tokenizer)
        }
    }

    /// Adds one id and returns the text it completes (empty for a skipped special token, and for
    /// a byte token that leaves a character incomplete).
    pub fn push(&mut self, id: u32) -> Result<&str> {
        let start = self.text.len();
        let piece = self.tokenizer.decode_one(id)?;
        if self.skip_special && self.tokenizer.is_special(id) {
            return Ok(&self.text[start..]);
        }
        match self.tokenizer.byte_value(id) {
            Some(b) => {
                self.pending.push(b);
                self.drain(false);
            }
            None => {
                // An ordinary token starts with a character, so pending bytes can never complete.
                self.drain(true);
                self.text.push_str(piece);
            }
        }
        Ok(&self.text[start..])
    }

    /// Flushes bytes still waiting for the rest of their character (as U+FFFD) and returns what
    /// that adds to the text.
    pub fn finish(&mut self) -> &str {
        let start = self.text.len();
        self.drain(true);
        &self.text[start..]
    }

    /// See [`drain_utf8`].
    fn drain(&mut self, all: bool) {
        drain_utf8(&mut self.pending, &mut self.text, all);
    }

    /// Everything decoded so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Takes the text decoded so far and starts again empty (bytes of an incomplete character
    /// stay pending).
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

/// Moves the complete characters of `pending` to `text`, invalid bytes as U+FFFD the way
/// `String::from_utf8_lossy` replaces them; an incomplete tail (the start of a character whose
/// other bytes have not come yet) stays in `pending` unless `all`. Both stream decoders (Nano's
/// and BPE's) hold back split characters through this one function.
pub(crate) fn drain_utf8(pending: &mut Vec<u8>, text: &mut String, all: bool) {
    let mut used = 0;
    for chunk in pending.utf8_chunks() {
        text.push_str(chunk.valid());
        used += chunk.valid().len();
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        // Only the last chunk's invalid part can be an incomplete (still valid) prefix.
        let is_tail = used + invalid.len() == pending.len();
        if is_tail && !all && could_continue(invalid) {
            break;
        }
        text.push(char::REPLACEMENT_CHARACTER);
        used += invalid.len();
    }
    pending.drain(..used);
}

/// Whether `bytes` (not valid UTF-8 on their own) are the start of some valid character.
fn could_continue(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.valid_up_to() == 0 && e.error_len().is_none(),
    }
}
