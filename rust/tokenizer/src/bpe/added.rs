//! Added tokens (special and not): found in the text before any other step, as HF `tokenizers`
//! does — the leftmost-longest occurrence of any of them wins, and the text between occurrences
//! goes through normalization, pre-tokenization and the model.
use aho_corasick::{AhoCorasick, MatchKind};

use crate::{Result, TokenizerError};

/// One added token as `tokenizer.json` declares it.
#[derive(Clone, Debug)]
pub struct AddedToken {
    pub id: u32,
    pub content: String,
    pub special: bool,
    /// Matched in the normalized text (its content normalized too) rather than the raw text.
    pub normalized: bool,
}

/// A matcher over some added tokens.
struct Matcher {
    automaton: AhoCorasick,
    /// (id, special) of each pattern.
    tokens: Vec<(u32, bool)>,
}

impl Matcher {
    fn new(patterns: Vec<(String, u32, bool)>) -> Result<Option<Matcher>> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|p| p.0.as_str()))
            .map_err(|e| TokenizerError::Invalid(format!("added tokens: {e}")))?;
        let tokens = patterns.iter().map(|p| (p.1, p.2)).collect();
        Ok(Some(Matcher { automaton, tokens }))
    }

    /// Splits `text` into runs of plain text and added-token ids. With `allow_special` false a
    /// special token's occurrence is left as plain text (HF's `encode_special_tokens`: the
    /// occurrence is found as usual, then not treated as the token).
    fn split<'t>(&self, text: &'t str, allow_special: bool, mut emit: impl FnMut(Segment<'t>)) {
        let mut plain_from = 0;
        for m in self.automaton.find_iter(text) {
            let (id, special) = self.tokens[m.pattern().as_usize()];
            if special && !allow_special {
                continue;
            }
            if m.start() > plain_from {
                emit(Segment::Text(&text[plain_from..m.start()]));
            }
            emit(Segment::Token(id));
            plain_from = m.end();
        }
        if plain_from < text.len() {
            emit(Segment::Text(&text[plain_from..]));
        }
    }
}

/// A piece of split text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Segment<'t> {
    Text(&'t str),
    Token(u32),
}

/// The added tokens of a vocabulary, split in the two groups HF matches at different stages.
pub(crate) struct AddedTokens {
    raw: Option<Matcher>,
    normalized: Option<Matcher>,
}

impl AddedTokens {
    /// `normalize`: the vocabulary's normalizer, applied to the contents of normalized tokens.
    pub(crate) fn new(tokens: &[AddedToken], normalize: impl Fn(&str) -> String) -> Result<Self> {
        let mut raw = Vec::new();
        let mut normalized = Vec::new();
        for t in tokens {
            if t.content.is_empty() {
                return Err(TokenizerError::Invalid(format!(
                    "added token {} is the empty string",
                    t.id
                )));
            }
            if t.normalized {
                normalized.push((normalize(&t.content), t.id, t.special));
            } else {
                raw.push((t.content.clone(), t.id, t.special));
            }
        }
        Ok(AddedTokens {
            raw: Matcher::new(raw)?,
            normalized: Matcher::new(normalized)?,
        })
    }

    /// Splits raw text by the tokens matched before normalization.
    #[inline]
    pub(crate) fn split_raw<'t>(
        &self,
        text: &'t str,
        allow_special: bool,
        mut emit: impl FnMut(Segment<'t>),
    ) {
        match &self.raw {
            Some(m) => m.split(text, allow_special, emit),
            None if !text.is_empty() => emit(Segment::Text(text)),
            None => {}
        }
    }

    /// Splits normalized text by the tokens matched after normalization.
    #[inline]
    pub(crate) fn split_normalized<'t>(
        &self,
        text: &'t str,
        allow_special: bool,
        mut emit: impl FnMut(Segment<'t>),
    ) {
        match &self.normalized {
            Some(m) => m.split(text, allow_special, emit),
            None if !text.is_empty() => emit(Segment::Text(text)),
            None => {}
        }
    }
}
