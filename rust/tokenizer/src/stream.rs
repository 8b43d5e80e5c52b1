//! Incremental decoding for streaming output.
use crate::{Result, Tokenizer};

/// Turns ids into text one at a time. Every token is a whole string of code points, so each
/// piece is printable as soon as its id arrives; the decoder also keeps the full text so far.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    text: String,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder that emits every token, special ones included.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            skip_special: false,
            text: String::new(),
        }
    }

    /// A decoder that emits nothing for special tokens (`<|eos|>` etc.), for chat output.
    pub fn skipping_special(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            skip_special: true,
            text: String::new(),
        }
    }

    /// Adds one id and returns the text it contributes (empty for a skipped special token).
    pub fn push(&mut self, id: u32) -> Result<&str> {
        let start = self.text.len();
        let piece = self.tokenizer.decode_one(id)?;
        if !(self.skip_special && self.tokenizer.is_special(id)) {
            self.text.push_str(piece);
        }
        Ok(&self.text[start..])
    }

    /// Everything decoded so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Takes the text decoded so far and starts again empty.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}
