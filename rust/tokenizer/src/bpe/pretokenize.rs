//! The pre-tokenizer patterns of GPT-2, Llama 3 and Qwen2, hand-written as scanners.
//!
//! The patterns (as HF `tokenizer.json` files spell them):
//!
//! - GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! - Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//!   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! - Qwen2: Llama 3's with `\p{N}` in place of `\p{N}{1,3}`.
//!
//! A regex engine finds, at each position, the first alternative that matches, each quantifier
//! taking as much as it can and giving back only what the rest needs. Every character is a
//! letter (`\p{L}`), a number (`\p{N}`), white space (`\s`, the Unicode White_Space property)
//! or something else, and every alternative is a run of one class with at most one character of
//! lead-in, so the first matching alternative and its length follow from the class of the next
//! one or two characters and the length of the run. The whitespace rules are the subtle part:
//!
//! - `\s+(?!\S)` gives back the run's last character when a non-space follows (the run must be
//!   followed by space or the end), so "␠␠␠word" splits as "␠␠", "␠word"; a single space
//!   before a non-space fails it and falls to `\s+` (GPT-2) or to the letter/punctuation rules.
//! - `\s*[\r\n]+` takes a whitespace run up to and including its last `\r` or `\n`.
//!
//! `tests` compares every rule with HF `tokenizers` through the Python test suite; the unit tests
//! here pin the cases above.
use std::sync::OnceLock;

/// The pre-tokenizer pattern of a byte-level vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Gpt2,
    Llama3,
    Qwen2,
}

/// GPT-2's pattern as HF writes it (also the one `ByteLevel { use_regex: true }` applies).
pub const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's pattern as its `tokenizer.json` writes it.
pub const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pattern as its `tokenizer.json` writes it.
pub const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl Pattern {
    /// The pattern a regex string spells, if it is one of the three.
    pub fn from_regex(regex: &str) -> Option<Pattern> {
        match regex {
            GPT2_REGEX => Some(Pattern::Gpt2),
            LLAMA3_REGEX => Some(Pattern::Llama3),
            QWEN2_REGEX => Some(Pattern::Qwen2),
            _ => None,
        }
    }

    pub fn regex(self) -> &'static str {
        match self {
            Pattern::Gpt2 => GPT2_REGEX,
            Pattern::Llama3 => LLAMA3_REGEX,
            Pattern::Qwen2 => QWEN2_REGEX,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Gpt2 => "gpt2",
            Pattern::Llama3 => "llama3",
            Pattern::Qwen2 => "qwen2",
        }
    }

    /// Calls `emit` with each piece of `text`, in order; the pieces concatenate to `text`.
    #[inline]
    pub fn split<'t>(self, text: &'t str, mut emit: impl FnMut(&'t str)) {
        let b = text.as_bytes();
        let mut pos = 0;
        while pos < b.len() {
            let end = match self {
                Pattern::Gpt2 => gpt2_end(b, pos),
                Pattern::Llama3 => llama_end(b, pos, 3),
                Pattern::Qwen2 => llama_end(b, pos, 1),
            };
            debug_assert!(end > pos && text.is_char_boundary(end));
            emit(&text[pos..end]);
            pos = end;
        }
    }
}

/// A character's class for the patterns. `Newline` is `\r` or `\n` (white space too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Class {
    Letter = 0,
    Number = 1,
    Space = 2,
    Newline = 3,
    Other = 4,
}

impl Class {
    #[inline]
    fn is_space(self) -> bool {
        matches!(self, Class::Space | Class::Newline)
    }
}

fn class_of_char(c: char) -> Class {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    if c == '\r' || c == '\n' {
        return Class::Newline;
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Class::Letter,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// Classes of all code points: a block index per 256 code points into deduplicated blocks.
struct ClassTable {
    index: Vec<u16>,
    blocks: Vec<[Class; 256]>,
}

const ASCII_CLASS: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut c = 0;
    while c < 128 {
        t[c] = match c as u8 {
            b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
            b'0'..=b'9' => Class::Number,
            b'\r' | b'\n' => Class::Newline,
            b'\t' | 0x0B | 0x0C | b' ' => Class::Space,
            _ => Class::Other,
        };
        c += 1;
    }
    t
};

fn class_table() -> &'static ClassTable {
    static TABLE: OnceLock<ClassTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut index = Vec::with_capacity(0x1100);
        let mut blocks: Vec<[Class; 256]> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for hi in 0..0x1100u32 {
            let mut block = [Class::Other; 256];
            for (lo, slot) in block.iter_mut().enumerate() {
                // Surrogates are no chars and never occur in a str.
                if let Some(c) = char::from_u32(hi << 8 | lo as u32) {
                    *slot = class_of_char(c);
                }
            }
            let key: Vec<u8> = block.iter().map(|&c| c as u8).collect();
            let id = *seen.entry(key).or_insert_with(|| {
                blocks.push(block);
                blocks.len() - 1
            });
            index.push(id as u16);
        }
        ClassTable { index, blocks }
    })
}

/// The code point at byte `i` of valid UTF-8 and its length.
#[inline(always)]
fn decode(b: &[u8], i: usize) -> (u32, usize) {
    let b0 = b[i] as u32;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xE0 {
        ((b0 & 0x1F) << 6 | (b[i + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        let c = (b0 & 0x0F) << 12 | (b[i + 1] as u32 & 0x3F) << 6 | (b[i + 2] as u32 & 0x3F);
        (c, 3)
    } else {
        let c = (b0 & 0x07) << 18
            | (b[i + 1] as u32 & 0x3F) << 12
            | (b[i + 2] as u32 & 0x3F) << 6
            | (b[i + 3] as u32 & 0x3F);
        (c, 4)
    }
}

/// Class, code point and UTF-8 length of the character at byte `i`.
#[inline(always)]
fn at(b: &[u8], i: usize) -> (Class, u32, usize) {
    let b0 = b[i];
    if b0 < 0x80 {
        return (ASCII_CLASS[b0 as usize], b0 as u32, 1);
    }
    let (c, len) = decode(b, i);
    let t = class_table();
    let class = t.blocks[t.index[(c >> 8) as usize] as usize][(c & 0xFF) as usize];
    (class, c, len)
}

/// The class of the character at byte `i`, `None` at the end.
#[inline(always)]
fn class_at(b: &[u8], i: usize) -> Option<Class> {
    (i < b.len()).then(|| at(b, i).0)
}

/// End of the run of characters of class `class` that starts at `i`.
#[inline(always)]
fn run(b: &[u8], mut i: usize, class: Class) -> usize {
    while i < b.len() {
        let (c, _, len) = at(b, i);
        if c != class {
            break;
        }
        i += len;
    }
    i
}

/// Length of the contraction after an apostrophe at `i - 1` (`s t m d re ve ll`), if any.
/// `fold`: letters compare case-insensitively, as under `(?i:...)` (simple case folding: `S`
/// and `ſ` for `s`; no other character folds to one of these letters).
#[inline]
fn contraction(b: &[u8], i: usize, fold: bool) -> Option<usize> {
    let lower = |j: usize| -> Option<(u8, usize)> {
        if j >= b.len() {
            return None;
        }
        match b[j] {
            c @ b'a'..=b'z' => Some((c, 1)),
            c @ b'A'..=b'Z' if fold => Some((c.to_ascii_lowercase(), 1)),
            // U+017F LATIN SMALL LETTER LONG S
            0xC5 if fold && b.get(j + 1) == Some(&0xBF) => Some((b's', 2)),
            _ => None,
        }
    };
    let (c1, l1) = lower(i)?;
    match c1 {
        b's' | b't' | b'm' | b'd' => Some(l1),
        b'r' | b'v' | b'l' => {
            let want = if c1 == b'l' { b'l' } else { b'e' };
            match lower(i + l1) {
                Some((c2, l2)) if c2 == want => Some(l1 + l2),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The whitespace run at `i`: its end, the start of its last character and the end of its last
/// newline (`i` when it has none).
#[inline]
fn space_run(b: &[u8], i: usize) -> (usize, usize, usize) {
    let (mut j, mut last, mut newline_end) = (i, i, i);
    while j < b.len() {
        let (c, _, len) = at(b, j);
        if !c.is_space() {
            break;
        }
        last = j;
        j += len;
        if c == Class::Newline {
            newline_end = j;
        }
    }
    (j, last, newline_end)
}

/// `\s+(?!\S)|\s+` on a run `i..end` whose last character starts at `last`.
#[inline]
fn trailing_space(b: &[u8], i: usize, end: usize, last: usize) -> usize {
    if end == b.len() || last == i {
        end
    } else {
        last
    }
}

/// End of GPT-2's piece starting at `i`.
fn gpt2_end(b: &[u8], i: usize) -> usize {
    let (class, c, len) = at(b, i);
    if c == u32::from(b'\'') {
        if let Some(n) = contraction(b, i + 1, false) {
            return i + 1 + n;
        }
    }
    if c == u32::from(b' ') {
        if let Some(next) = class_at(b, i + 1) {
            if !next.is_space() {
                return run(b, i + 1, next);
            }
        }
    }
    if !class.is_space() {
        return run(b, i + len, class);
    }
    let (end, last, _) = space_run(b, i);
    trailing_space(b, i, end, last)
}

/// End of the Llama 3 (`max_digits` 3) or Qwen2 (`max_digits` 1) piece starting at `i`.
fn llama_end(b: &[u8], i: usize, max_digits: usize) -> usize {
    let (class, c, len) = at(b, i);
    if c == u32::from(b'\'') {
        if let Some(n) = contraction(b, i + 1, true) {
            return i + 1 + n;
        }
    }
    match class {
        // [^\r\n\p{L}\p{N}]?\p{L}+
        Class::Letter => return run(b, i + len, Class::Letter),
        Class::Number => {
            // \p{N}{1,max_digits}
            let mut j = i + len;
            for _ in 1..max_digits {
                match (j < b.len()).then(|| at(b, j)) {
                    Some((Class::Number, _, l)) => j += l,
                    _ => break,
                }
            }
            return j;
        }
        Class::Space | Class::Other => {
            if class_at(b, i + len) == Some(Class::Letter) {
                return run(b, i + len, Class::Letter);
            }
        }
        Class::Newline => {}
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    let punct_from = if class == Class::Other {
        Some(i)
    } else if c == u32::from(b' ') && class_at(b, i + 1) == Some(Class::Other) {
        Some(i + 1)
    } else {
        None
    };
    if let Some(from) = punct_from {
        let j = run(b, from, Class::Other);
        return run(b, j, Class::Newline);
    }
    // \s*[\r\n]+|\s+(?!\S)|\s+
    let (end, last, newline_end) = space_run(b, i);
    if newline_end > i {
        return newline_end;
    }
    trailing_space(b, i, end, last)
}

/// Whether every pattern has a piece boundary at byte `p` of `b` that does not depend on the
/// text before or after: `p` follows a `\n` that follows a non-space character, and a letter
/// starts at `p`. No piece holds a newline followed by a letter (letters take at most a
/// non-newline lead-in); the newline is a piece or ends one whether or not the text goes on
/// after it (GPT-2: a lone `\n`; Llama 3 / Qwen2: the run or punctuation ends at its last
/// newline); and the scan from `p` reads only what follows.
pub(crate) fn is_newline_cut(b: &[u8], p: usize) -> bool {
    if p < 2 || p >= b.len() || b[p - 1] != b'\n' {
        return false;
    }
    let mut q = p - 2;
    while q > 0 && b[q] & 0xC0 == 0x80 {
        q -= 1;
    }
    !at(b, q).0.is_space() && at(b, p).0 == Class::Letter
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(p: Pattern, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        p.split(text, |s| out.push(s));
        out
    }

    #[test]
    fn gpt2_cases() {
        let p = Pattern::Gpt2;
        assert_eq!(pieces(p, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(p, "   word"), ["  ", " word"]);
        assert_eq!(pieces(p, "a \t\tb"), ["a", " \t", "\t", "b"]);
        assert_eq!(pieces(p, "x  "), ["x", "  "]);
        assert_eq!(
            pieces(p, "I'll it's 'Re"),
            ["I", "'ll", " it", "'s", " '", "Re"]
        );
        assert_eq!(pieces(p, " 123abc!!"), [" 123", "abc", "!!"]);
        assert_eq!(pieces(p, "\n\nx"), ["\n", "\n", "x"]);
    }

    #[test]
    fn llama3_and_qwen2_cases() {
        let p = Pattern::Llama3;
        assert_eq!(pieces(p, "I'LL 12345"), ["I", "'LL", " ", "123", "45"]);
        assert_eq!(pieces(p, "(hello) world"), ["(hello", ")", " world"]);
        assert_eq!(pieces(p, "a.\n\n  b"), ["a", ".\n\n", " ", " b"]);
        assert_eq!(pieces(p, "a \n \n  b"), ["a", " \n \n", " ", " b"]);
        assert_eq!(pieces(p, "x  \t"), ["x", "  \t"]);
        assert_eq!(pieces(p, "中文，测试"), ["中文", "，测试"]);
        assert_eq!(pieces(Pattern::Qwen2, "12345"), ["1", "2", "3", "4", "5"]);
        assert_eq!(pieces(p, "'ſ"), ["'ſ"]);
    }

    #[test]
    fn class_table_agrees_with_direct_lookup() {
        for code in (0..0x11_0000u32).step_by(97) {
            if let Some(c) = char::from_u32(code) {
                let mut buf = [0u8; 4];
                let s = c.encode_utf8(&mut buf);
                assert_eq!(at(s.as_bytes(), 0).0, class_of_char(c), "{code:#x}");
            }
        }
    }

    #[test]
    fn pieces_cover_the_text() {
        let text = "a\u{301} 😀 x\u{fffd}\u{e000}  \r\n\t 99' 'd";
        for p in [Pattern::Gpt2, Pattern::Llama3, Pattern::Qwen2] {
            assert_eq!(pieces(p, text).concat(), text);
        }
    }
}
