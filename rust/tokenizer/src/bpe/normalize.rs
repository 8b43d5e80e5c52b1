//! The normalizers HF `tokenizer.json` files of the supported families use: NFC (Qwen2), and
//! SentencePiece's space handling (Llama 2 / TinyLlama: prepend `▁`, then spaces become `▁`).
//!
//! Known difference: HF `tokenizers` composes with an older Unicode version's tables than the
//! `unicode-normalization` crate, so combining marks assigned since then may be reordered
//! differently (canonical ordering by combining class) in NFC; ordinary text is unaffected.
use std::borrow::Cow;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// SentencePiece's word-boundary mark, U+2581.
pub const SPACE_MARK: char = '\u{2581}';

/// One normalization step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Unicode canonical composition.
    Nfc,
    /// Prepends the string to non-empty text.
    Prepend(String),
    /// Replaces every occurrence of a literal string.
    Replace { pattern: String, content: String },
}

/// A sequence of steps applied in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Normalizer {
    pub steps: Vec<Step>,
}

impl Normalizer {
    pub fn is_identity(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn apply<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for step in &self.steps {
            match step {
                Step::Nfc => {
                    if is_nfc_quick(out.chars()) != IsNormalized::Yes {
                        out = Cow::Owned(out.nfc().collect());
                    }
                }
                Step::Prepend(s) => {
                    if !out.is_empty() {
                        let mut t = String::with_capacity(s.len() + out.len());
                        t.push_str(s);
                        t.push_str(&out);
                        out = Cow::Owned(t);
                    }
                }
                Step::Replace { pattern, content } => {
                    if out.contains(pattern.as_str()) {
                        out = Cow::Owned(out.replace(pattern.as_str(), content));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentencepiece_spaces() {
        let n = Normalizer {
            steps: vec![
                Step::Prepend("▁".into()),
                Step::Replace {
                    pattern: " ".into(),
                    content: "▁".into(),
                },
            ],
        };
        assert_eq!(n.apply("a b  c"), "▁a▁b▁▁c");
        assert_eq!(n.apply(""), "");
    }

    #[test]
    fn nfc_composes() {
        let n = Normalizer {
            steps: vec![Step::Nfc],
        };
        assert_eq!(n.apply("e\u{301}"), "\u{e9}");
        assert!(matches!(n.apply("plain"), Cow::Borrowed(_)));
    }
}
