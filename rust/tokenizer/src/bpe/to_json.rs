//! A [`BpeSpec`] written as HF `tokenizer.json` text: what a model file stores for a tokenizer read
//! from GGUF metadata, so that one reader ([`super::hf_json`]) serves both sources. The text is a
//! complete `tokenizer.json` (HF `tokenizers` loads it too) that `hf_json` parses back into the
//! same family, normalizer, vocabulary, merges and added tokens.
use serde_json::{json, Map, Value};

use super::normalize::Step;
use super::{BpeSpec, Family, Pattern, SPACE_MARK};

fn normalizer(steps: &[Step]) -> Value {
    let one = |s: &Step| match s {
        Step::Nfc => json!({"type": "NFC"}),
        Step::Prepend(p) => json!({"type": "Prepend", "prepend": p}),
        Step::Replace { pattern, content } => {
            json!({"type": "Replace", "pattern": {"String": pattern}, "content": content})
        }
    };
    match steps {
        [] => Value::Null,
        [s] => one(s),
        _ => json!({"type": "Sequence", "normalizers": steps.iter().map(one).collect::<Vec<_>>()}),
    }
}

fn byte_level(add_prefix_space: bool, use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": true,
           "use_regex": use_regex})
}

impl BpeSpec {
    /// The `tokenizer.json` text of this tokenizer (special-token names and the chat template,
    /// [`BpeSpec::config`], belong to `tokenizer_config.json` and are not in it).
    pub fn to_hf_json(&self) -> String {
        let vocab: Map<String, Value> = self
            .vocab
            .iter()
            .map(|(t, id)| (t.clone(), Value::from(*id)))
            .collect();
        let merges: Vec<Value> = self.merges.iter().map(|(a, b)| json!([a, b])).collect();
        let (unk, fuse_unk, byte_fallback) = match &self.family {
            Family::SentencePiece {
                byte_fallback,
                unk_token,
                fuse_unk,
            } => (unk_token.clone(), *fuse_unk, *byte_fallback),
            Family::ByteLevel { .. } => (None, false, false),
        };
        let (pre_tokenizer, decoder) = match &self.family {
            Family::ByteLevel {
                pattern: Pattern::Gpt2,
                add_prefix_space,
            } => (byte_level(*add_prefix_space, true), byte_level(true, true)),
            Family::ByteLevel {
                pattern,
                add_prefix_space,
            } => {
                let split = json!({"type": "Split", "pattern": {"Regex": pattern.regex()},
                                   "behavior": "Isolated", "invert": false});
                let pre = json!({"type": "Sequence",
                                 "pretokenizers": [split, byte_level(*add_prefix_space, false)]});
                (pre, byte_level(true, true))
            }
            Family::SentencePiece { .. } => {
                let mut steps = vec![
                    json!({"type": "Replace", "pattern": {"String": SPACE_MARK.to_string()},
                           "content": " "}),
                    json!({"type": "ByteFallback"}),
                    json!({"type": "Fuse"}),
                ];
                if self.strip_leading_space {
                    steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
                }
                (Value::Null, json!({"type": "Sequence", "decoders": steps}))
            }
        };
        let added: Vec<Value> = self
            .added
            .iter()
            .map(|a| {
                json!({"id": a.id, "content": a.content, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": a.normalized, "special": a.special})
            })
            .collect();
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer(&self.normalizer.steps),
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": decoder,
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": unk,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": fuse_unk,
                "byte_fallback": byte_fallback,
                "ignore_merges": self.ignore_merges,
                "vocab": vocab,
                "merges": merges,
            }
        })
        .to_string()
    }
}
