//! The tokenizer a model file carries: Nano's maximum-forward-match vocabulary, or a Hugging Face
//! BPE tokenizer (`tokenizer.json` plus its special tokens and chat template) for imported models.
//! The engine encodes prompts, recognises the tokens that end a generation and decodes the
//! stream through this one type, whichever kind the file holds.
use nano_tokenizer::bpe::{BpeStreamDecoder, HfConfig};
use nano_tokenizer::{special, BpeTokenizer, ChatTemplate, StreamDecoder, Tokenizer};

use crate::error::{Error, Result};
use crate::format::{HfTokenizer, TokenList, TokenizerData};

/// A Hugging Face tokenizer with what the engine needs beside it.
pub struct HfModelTokenizer {
    bpe: BpeTokenizer,
    data: HfTokenizer,
    template: Option<ChatTemplate>,
    /// The id prompts start with, when `add_bos_token`.
    bos: Option<u32>,
    stop_ids: Vec<u32>,
}

/// Either kind of tokenizer (see the module comment).
// One per model, behind an `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum ModelTokenizer {
    Nano(Tokenizer),
    Hf(HfModelTokenizer),
}

impl std::fmt::Debug for ModelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelTokenizer::Nano(t) => t.fmt(f),
            ModelTokenizer::Hf(h) => h.bpe.fmt(f),
        }
    }
}

fn section_err(e: impl std::fmt::Display) -> Error {
    Error::Format(format!("tokenizer section: {e}"))
}

impl ModelTokenizer {
    /// Builds the tokenizer of a parsed file (`vocab_size`: the model's, which a Hugging Face
    /// vocabulary may fall short of: embedding rows are often padded to a round number).
    pub fn from_data(data: TokenizerData, vocab_size: usize) -> Result<ModelTokenizer> {
        match data {
            TokenizerData::Vocab(TokenList { tokens, special }) => {
                Tokenizer::from_tokens(tokens, special)
                    .map(ModelTokenizer::Nano)
                    .map_err(section_err)
            }
            TokenizerData::Hf(hf) => ModelTokenizer::from_hf(hf, vocab_size),
        }
    }

    /// Builds and checks a Hugging Face tokenizer: the BPE model, its vocabulary within the
    /// model's, the bos / eos names and stop ids in it, the chat template compiled.
    pub fn from_hf(data: HfTokenizer, vocab_size: usize) -> Result<ModelTokenizer> {
        let config = HfConfig {
            bos_token: data.bos_token.clone(),
            eos_token: data.eos_token.clone(),
            pad_token: data.pad_token.clone(),
            unk_token: data.unk_token.clone(),
            add_bos_token: Some(data.add_bos_token),
            chat_template: data.chat_template.clone(),
        };
        let bpe = BpeTokenizer::from_hf_json(&data.json, config).map_err(section_err)?;
        if bpe.vocab_size() > vocab_size {
            return Err(section_err(format!(
                "the tokenizer has {} tokens, the model's vocab_size is {vocab_size}",
                bpe.vocab_size()
            )));
        }
        let id_of = |field: &str, name: &Option<String>| -> Result<Option<u32>> {
            match name {
                None => Ok(None),
                Some(n) => bpe
                    .token_to_id(n)
                    .map(Some)
                    .ok_or_else(|| section_err(format!("{field} {n:?} is not in the vocabulary"))),
            }
        };
        let bos = id_of("bos_token", &data.bos_token)?;
        let eos = id_of("eos_token", &data.eos_token)?;
        if data.add_bos_token && bos.is_none() {
            return Err(section_err("add_bos_token is set but bos_token is not"));
        }
        if let Some(&bad) = data.stop_ids.iter().find(|&&i| i as usize >= vocab_size) {
            return Err(section_err(format!(
                "stop id {bad} is outside the vocabulary of {vocab_size}"
            )));
        }
        let mut stop_ids = data.stop_ids.clone();
        stop_ids.extend(eos.filter(|e| !data.stop_ids.contains(e)));
        let template = match &data.chat_template {
            Some(t) => Some(ChatTemplate::new(t).map_err(section_err)?),
            None => None,
        };
        Ok(ModelTokenizer::Hf(HfModelTokenizer {
            bos: bos.filter(|_| data.add_bos_token),
            bpe,
            data,
            template,
            stop_ids,
        }))
    }

    /// "nano" or "hf".
    pub fn kind(&self) -> &'static str {
        match self {
            ModelTokenizer::Nano(_) => "nano",
            ModelTokenizer::Hf(_) => "hf",
        }
    }

    /// The ids of `text`; special tokens' text becomes the special token only when `allow_special`.
    pub fn encode(&self, text: &str, allow_special: bool) -> Vec<u32> {
        match self {
            ModelTokenizer::Nano(t) => t.encode(text, allow_special),
            ModelTokenizer::Hf(h) => h.bpe.encode(text, allow_special),
        }
    }

    /// The ids a plain-text prompt starts generation from: the text's ids, after the BOS token
    /// when the model's tokenizer adds one (as `tokenizer(text)` does in `transformers`).
    pub fn prompt_ids(&self, text: &str) -> Vec<u32> {
        match self {
            ModelTokenizer::Nano(t) => t.encode(text, false),
            ModelTokenizer::Hf(h) => {
                let mut ids: Vec<u32> = h.bos.into_iter().collect();
                h.bpe.encode_into(text, false, &mut ids);
                ids
            }
        }
    }

    /// The text of `ids`, special tokens left out (and, for Hugging Face vocabularies, the
    /// embedding rows beyond the tokenizer's vocabulary, which name no token: HF's `decode` skips them).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = match self {
            ModelTokenizer::Nano(t) => {
                let kept: Vec<u32> = ids.iter().copied().filter(|&i| !t.is_special(i)).collect();
                t.decode(&kept)
            }
            ModelTokenizer::Hf(h) => {
                let n = h.bpe.vocab_size() as u32;
                let kept: Vec<u32> = ids.iter().copied().filter(|&i| i < n).collect();
                h.bpe.decode(&kept, true)
            }
        };
        text.map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            ModelTokenizer::Nano(t) => t.vocab_size(),
            ModelTokenizer::Hf(h) => h.bpe.vocab_size(),
        }
    }

    pub fn is_special(&self, id: u32) -> bool {
        match self {
            ModelTokenizer::Nano(t) => t.is_special(id),
            ModelTokenizer::Hf(h) => h.bpe.is_special(id),
        }
    }

    /// The token's string as its vocabulary spells it (None past the vocabulary).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        match self {
            ModelTokenizer::Nano(t) => t.id_to_token(id),
            ModelTokenizer::Hf(h) => h.bpe.id_to_token(id),
        }
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            ModelTokenizer::Nano(t) => t.token_to_id(token),
            ModelTokenizer::Hf(h) => h.bpe.token_to_id(token),
        }
    }

    /// The ids that end a generation: `<|eos|>` for Nano vocabularies; the model's eos token and
    /// `eos_token_id`s for Hugging Face ones.
    pub fn stop_ids(&self) -> Vec<u32> {
        match self {
            ModelTokenizer::Nano(t) => t.token_to_id(special::EOS).into_iter().collect(),
            ModelTokenizer::Hf(h) => h.stop_ids.clone(),
        }
    }

    /// A hash naming the vocabulary: Nano's tokenizer hash, or XXH3-64 of `tokenizer.json`.
    pub fn hash_hex(&self) -> String {
        match self {
            ModelTokenizer::Nano(t) => t.hash_hex(),
            ModelTokenizer::Hf(h) => {
                format!(
                    "{:016x}",
                    xxhash_rust::xxh3::xxh3_64(h.data.json.as_bytes())
                )
            }
        }
    }

    /// Nano's vocabulary JSON, or the text of `tokenizer.json` (see [`ModelTokenizer::kind`]).
    pub fn to_json_string(&self) -> String {
        match self {
            ModelTokenizer::Nano(t) => t.to_json_string(),
            ModelTokenizer::Hf(h) => h.data.json.clone(),
        }
    }

    /// The Nano tokenizer, when this is one.
    pub fn as_nano(&self) -> Option<&Tokenizer> {
        match self {
            ModelTokenizer::Nano(t) => Some(t),
            ModelTokenizer::Hf(_) => None,
        }
    }

    /// The Hugging Face tokenizer's data (special-token names, template), when this is one.
    pub fn hf(&self) -> Option<&HfTokenizer> {
        match self {
            ModelTokenizer::Nano(_) => None,
            ModelTokenizer::Hf(h) => Some(&h.data),
        }
    }

    /// The model's chat template, when its file carries one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        match self {
            ModelTokenizer::Nano(_) => None,
            ModelTokenizer::Hf(h) => h.template.as_ref(),
        }
    }

    /// Renders `messages_json` (a JSON list of `{"role", "content"}` objects) with the model's
    /// chat template, with the special-token names as `transformers` passes them
    /// (`bos_token`, `eos_token`, `pad_token`, `unk_token`).
    pub fn render_chat(&self, messages_json: &str, add_generation_prompt: bool) -> Result<String> {
        let ModelTokenizer::Hf(h) = self else {
            return Err(Error::Unsupported(
                "this model file carries no chat template".into(),
            ));
        };
        let Some(template) = &h.template else {
            return Err(Error::Unsupported(
                "this model file carries no chat template".into(),
            ));
        };
        let d = &h.data;
        let mut vars = serde_json::Map::new();
        for (name, value) in [
            ("bos_token", &d.bos_token),
            ("eos_token", &d.eos_token),
            ("pad_token", &d.pad_token),
            ("unk_token", &d.unk_token),
        ] {
            if let Some(v) = value {
                vars.insert(name.into(), v.clone().into());
            }
        }
        let vars = serde_json::Value::Object(vars).to_string();
        template
            .render(messages_json, add_generation_prompt, &vars)
            .map_err(|e| Error::InvalidInput(e.to_string()))
    }

    /// The ids of a rendered chat prompt: special tokens' text is those tokens, and no BOS is
    /// added (templates write their own), as `apply_chat_template(..., tokenize=True)` does.
    pub fn chat_ids(&self, messages_json: &str, add_generation_prompt: bool) -> Result<Vec<u32>> {
        let text = self.render_chat(messages_json, add_generation_prompt)?;
        Ok(self.encode(&text, true))
    }

    /// A streaming decoder that prints nothing for special tokens.
    pub fn stream_decoder(&self) -> TextStream<'_> {
        match self {
            ModelTokenizer::Nano(t) => TextStream::Nano(StreamDecoder::skipping_special(t)),
            ModelTokenizer::Hf(h) => TextStream::Hf(BpeStreamDecoder::new(&h.bpe, true)),
        }
    }
}

/// Streaming decoder of either kind (same calls as [`StreamDecoder`]).
pub enum TextStream<'a> {
    Nano(StreamDecoder<'a>),
    Hf(BpeStreamDecoder<'a>),
}

impl TextStream<'_> {
    /// Adds one id and returns the text it completes. An id of a padded embedding row beyond a
    /// Hugging Face vocabulary adds nothing (as [`ModelTokenizer::decode`]).
    pub fn push(&mut self, id: u32) -> Result<&str> {
        let piece = match self {
            TextStream::Nano(d) => d.push(id),
            TextStream::Hf(d) if id as usize >= d.vocab_size() => Ok(""),
            TextStream::Hf(d) => d.push(id),
        };
        piece.map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Flushes an incomplete character (as U+FFFD).
    pub fn finish(&mut self) -> &str {
        match self {
            TextStream::Nano(d) => d.finish(),
            TextStream::Hf(d) => d.finish(),
        }
    }

    /// Takes the text decoded so far.
    pub fn take(&mut self) -> String {
        match self {
            TextStream::Nano(d) => d.take(),
            TextStream::Hf(d) => d.take(),
        }
    }
}
