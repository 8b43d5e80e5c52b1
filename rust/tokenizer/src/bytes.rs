//! Byte tokens: the 256 entries `<0x00>`..`<0xFF>` (two upper-case hex digits, the spelling of
//! SentencePiece and llama.cpp) that let the tokenizer spell any character outside the vocabulary
//! as its UTF-8 bytes instead of `<|unknown|>`.
//!
//! A vocabulary has all 256 or none: with a partial set some characters could be spelled and
//! others not, which is never what a builder meant. Byte tokens are ordinary (not special) tokens
//! that never match text themselves; they appear only as the fallback for an unmatched character.
use crate::error::{Result, TokenizerError};

const NO_BYTE: u16 = u16::MAX;

/// The spelling of the byte token for `b`.
pub fn byte_token(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// The byte a token string spells, if it is exactly `<0xHH>` with upper-case hex digits.
pub fn parse_byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    let upper = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
    if hex.len() != 2 || !hex.bytes().all(upper) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Where the byte tokens of a vocabulary are: id by byte and byte by id.
pub(crate) struct ByteTokens {
    ids: [u32; 256],
    /// Indexed by token id: the byte, or `NO_BYTE`.
    values: Vec<u16>,
}

impl ByteTokens {
    /// Finds the byte tokens of `tokens`: `None` when there are none, an error when the set is
    /// incomplete or a byte token is flagged special.
    pub fn find(tokens: &[String], special: &[bool]) -> Result<Option<ByteTokens>> {
        let mut ids = [u32::MAX; 256];
        let mut values = vec![NO_BYTE; tokens.len()];
        let mut found = 0;
        for (id, token) in tokens.iter().enumerate() {
            if let Some(b) = parse_byte_token(token) {
                if special[id] {
                    return Err(TokenizerError::Invalid(format!(
                        "byte token {token:?} (id {id}) is flagged special; byte tokens are ordinary tokens"
                    )));
                }
                // Token strings are unique (checked before), so each byte is seen at most once.
                ids[b as usize] = id as u32;
                values[id] = u16::from(b);
                found += 1;
            }
        }
        match found {
            0 => Ok(None),
            256 => Ok(Some(ByteTokens { ids, values })),
            n => {
                let missing = (0..=255u8)
                    .find(|&b| ids[b as usize] == u32::MAX)
                    .map(byte_token)
                    .unwrap_or_default();
                Err(TokenizerError::Invalid(format!(
                    "the vocabulary has {n} of the 256 byte tokens <0x00>..<0xFF> (missing {missing} \
                     among others); a vocabulary has all of them or none"
                )))
            }
        }
    }

    #[inline]
    pub fn id(&self, b: u8) -> u32 {
        self.ids[b as usize]
    }

    #[inline]
    pub fn value(&self, id: u32) -> Option<u8> {
        match self.values.get(id as usize) {
            Some(&v) if v != NO_BYTE => Some(v as u8),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips_and_is_strict() {
        for b in 0..=255u8 {
            assert_eq!(parse_byte_token(&byte_token(b)), Some(b));
        }
        assert_eq!(byte_token(0xE5), "<0xE5>");
        for not in [
            "<0xe5>", "<0xE>", "<0x0E5>", "0xE5", "<0xG0>", "<0x E>", "<0xE5>>",
        ] {
            assert_eq!(parse_byte_token(not), None, "{not}");
        }
    }

    #[test]
    fn all_or_none() {
        let mut tokens: Vec<String> = vec!["a".into()];
        assert!(ByteTokens::find(&tokens, &[false]).unwrap().is_none());
        tokens.extend((0..=254u8).map(byte_token));
        let special = vec![false; tokens.len()];
        let err = ByteTokens::find(&tokens, &special)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("255 of the 256") && err.contains("<0xFF>"),
            "{err}"
        );
        tokens.push(byte_token(255));
        let mut special = vec![false; tokens.len()];
        let b = ByteTokens::find(&tokens, &special).unwrap().unwrap();
        assert_eq!(b.id(0), 1);
        assert_eq!(b.value(1), Some(0));
        assert_eq!(b.value(0), None);
        assert_eq!(b.value(9999), None);
        special[5] = true;
        assert!(ByteTokens::find(&tokens, &special).is_err());
    }
}
