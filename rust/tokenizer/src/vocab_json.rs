//! The vocabulary JSON file: `{"vocab_size": N, "stoi": {...}, "itos": [...], "special_tokens": {...}}`.
//!
//! Reading is strict (every inconsistency is reported). Writing reproduces Python's
//! `json.dumps(config, ensure_ascii=True)` byte for byte, the format of the original project's files,
//! so load → save of such a file is the identity.
use std::fmt::{self, Write as _};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::error::{Result, TokenizerError};

/// The file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVocab {
    pub vocab_size: u64,
    pub stoi: Pairs,
    pub itos: Vec<String>,
    pub special_tokens: Pairs,
}

/// A JSON object of string → non-negative integer, kept in file order with duplicates preserved
/// (a HashMap would silently drop a repeated key).
pub(crate) struct Pairs(pub Vec<(String, u64)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object mapping token strings to non-negative integer ids")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Pairs, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(pair) = map.next_entry::<String, u64>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

/// A validated vocabulary: tokens by id and their special flags.
pub(crate) struct Checked {
    pub itos: Vec<String>,
    pub special: Vec<bool>,
}

pub(crate) fn parse(text: &str) -> Result<Checked> {
    // serde would also accept a 4-element array for the struct; only an object is meaningful.
    if text.trim_start().chars().next().is_some_and(|c| c != '{') {
        return Err(TokenizerError::Json(
            "expected a JSON object with keys vocab_size, stoi, itos, special_tokens".into(),
        ));
    }
    let raw: RawVocab =
        serde_json::from_str(text).map_err(|e| TokenizerError::Json(e.to_string()))?;
    check(raw)
}

fn check(raw: RawVocab) -> Result<Checked> {
    let invalid = |msg: String| Err(TokenizerError::Invalid(msg));
    let n = raw.itos.len();
    if raw.vocab_size != n as u64 {
        return invalid(format!(
            "vocab_size is {} but itos has {n} entries",
            raw.vocab_size
        ));
    }
    if raw.stoi.0.len() != n {
        return invalid(format!(
            "stoi has {} entries but itos has {n}",
            raw.stoi.0.len()
        ));
    }
    for (token, id) in &raw.stoi.0 {
        match raw.itos.get(*id as usize) {
            Some(t) if *id < n as u64 && t == token => {}
            Some(t) if *id < n as u64 => {
                return invalid(format!(
                    "stoi maps {token:?} to {id} but itos[{id}] is {t:?}"
                ))
            }
            _ => return invalid(format!("stoi maps {token:?} to {id}, outside 0..{n}")),
        }
    }
    // Every stoi entry points at its own itos slot and both have n entries, so the maps are
    // inverse exactly when itos has no duplicates; that check happens when the table is built.
    let mut special = vec![false; n];
    for (token, id) in &raw.special_tokens.0 {
        match raw.itos.get(*id as usize) {
            Some(t) if *id < n as u64 && t == token => {
                if std::mem::replace(&mut special[*id as usize], true) {
                    return invalid(format!("special token {token:?} listed twice"));
                }
            }
            _ => {
                return invalid(format!(
                    "special token {token:?} with id {id} does not match itos"
                ))
            }
        }
    }
    Ok(Checked {
        itos: raw.itos,
        special,
    })
}

/// Python's `json.dumps(obj, ensure_ascii=True)` form of one string.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// The whole file, in the original project's key order and separators.
pub(crate) fn serialize(itos: &[String], special: &[bool]) -> String {
    let mut out = String::with_capacity(itos.iter().map(|t| 2 * t.len() + 16).sum::<usize>() + 64);
    let _ = write!(out, "{{\"vocab_size\": {}, \"stoi\": {{", itos.len());
    for (id, token) in itos.iter().enumerate() {
        if id > 0 {
            out.push_str(", ");
        }
        push_json_string(&mut out, token);
        let _ = write!(out, ": {id}");
    }
    out.push_str("}, \"itos\": [");
    for (id, token) in itos.iter().enumerate() {
        if id > 0 {
            out.push_str(", ");
        }
        push_json_string(&mut out, token);
    }
    out.push_str("], \"special_tokens\": {");
    let specials = itos
        .iter()
        .zip(special)
        .enumerate()
        .filter(|(_, (_, s))| **s);
    for (k, (id, (token, _))) in specials.enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        push_json_string(&mut out, token);
        let _ = write!(out, ": {id}");
    }
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, s);
        out
    }

    #[test]
    fn escapes_like_python_ensure_ascii() {
        assert_eq!(escaped("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            escaped("\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}"),
            r#""\n\r\t\b\f\u0000\u001f\u007f""#
        );
        assert_eq!(escaped("中é"), r#""\u4e2d\u00e9""#);
        assert_eq!(escaped("😀"), r#""\ud83d\ude00""#);
        assert_eq!(escaped("/<|eos|>"), r#""/<|eos|>""#);
    }

    #[test]
    fn round_trips_through_serialize() {
        let itos: Vec<String> = ["<|unknown|>", "a", "\"q\"", "中文"]
            .map(String::from)
            .to_vec();
        let special = vec![true, false, false, false];
        let text = serialize(&itos, &special);
        assert_eq!(
            text,
            r#"{"vocab_size": 4, "stoi": {"<|unknown|>": 0, "a": 1, "\"q\"": 2, "\u4e2d\u6587": 3}, "itos": ["<|unknown|>", "a", "\"q\"", "\u4e2d\u6587"], "special_tokens": {"<|unknown|>": 0}}"#
        );
        let back = parse(&text).unwrap();
        assert_eq!(back.itos, itos);
        assert_eq!(back.special, special);
    }

    #[test]
    fn rejects_inconsistent_files() {
        let cases = [
            (
                r#"{"vocab_size": 2, "stoi": {"a": 0}, "itos": ["a"], "special_tokens": {}}"#,
                "vocab_size",
            ),
            (
                r#"{"vocab_size": 1, "stoi": {"a": 1}, "itos": ["a"], "special_tokens": {}}"#,
                "outside",
            ),
            (
                r#"{"vocab_size": 2, "stoi": {"a": 1, "b": 0}, "itos": ["a", "b"], "special_tokens": {}}"#,
                "itos[1]",
            ),
            (
                r#"{"vocab_size": 1, "stoi": {"a": 0}, "itos": ["a"], "special_tokens": {"b": 0}}"#,
                "special",
            ),
            (
                r#"{"vocab_size": 1, "stoi": {"a": 0}, "itos": ["a"]}"#,
                "special_tokens",
            ),
            (
                r#"{"vocab_size": 1, "stoi": {"a": -1}, "itos": ["a"], "special_tokens": {}}"#,
                "invalid value",
            ),
            (
                r#"{"vocab_size": 1, "stoi": {"a": 0}, "itos": ["a"], "special_tokens": {}, "x": 1}"#,
                "unknown field",
            ),
            (r#"[1, 2]"#, "JSON object"),
            (r#"{"vocab_size": 1,"#, "EOF"),
        ];
        for (text, needle) in cases {
            let err = parse(text)
                .err()
                .unwrap_or_else(|| panic!("accepted {text}"))
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
