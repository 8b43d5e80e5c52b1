//! Vocabulary builder: characters by frequency, then multi-character tokens chosen by how many
//! tokens they save under this tokenizer's own greedy matching.
//!
//! Multi-character tokens grow in rounds: segment the (deduplicated) corpus lines with the
//! current vocabulary, count adjacent token pairs, and add the most frequent concatenations.
//! A pair seen n times saves about n tokens; re-segmenting each round keeps the estimate honest
//! for maximum forward matching (unlike BPE merges, which assume their own merge order).
//! Everything is ordered by (count, string), so the result is deterministic.
use rustc_hash::{FxHashMap, FxHashSet};

use rayon::prelude::*;

use crate::parallel::with_threads;
use crate::{byte_token, Result, Tokenizer, TokenizerError, UNKNOWN_TOKEN};

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Total entries, special tokens included.
    pub vocab_size: usize,
    /// Given the first ids, in this order; must include `<|unknown|>`.
    pub special_tokens: Vec<String>,
    /// Characters seen fewer times are left out (they will encode as `<|unknown|>`).
    pub min_char_count: usize,
    /// Longest multi-character token, in code points.
    pub max_token_chars: usize,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Reserve the 256 byte tokens `<0x00>`..`<0xFF>` (right after the special tokens), so
    /// characters outside the vocabulary become their UTF-8 bytes instead of `<|unknown|>`.
    pub byte_fallback: bool,
}

/// What the builder found.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    /// Distinct characters in the corpus.
    pub distinct_chars: usize,
    /// Characters given their own token.
    pub kept_chars: usize,
    /// Share of the corpus's character occurrences covered by kept characters.
    pub char_coverage: f64,
    /// Multi-character tokens chosen.
    pub multi_char_tokens: usize,
    /// Segment-and-count rounds run.
    pub rounds: usize,
    /// Characters in the corpus.
    pub corpus_chars: u64,
    /// Tokens per character on the corpus with the final vocabulary.
    pub tokens_per_char: f64,
}

impl BuildReport {
    /// (name, value) pairs, for the Python report dict.
    pub fn items(&self) -> Vec<(String, f64)> {
        [
            ("distinct_chars", self.distinct_chars as f64),
            ("kept_chars", self.kept_chars as f64),
            ("char_coverage", self.char_coverage),
            ("multi_char_tokens", self.multi_char_tokens as f64),
            ("rounds", self.rounds as f64),
            ("corpus_chars", self.corpus_chars as f64),
            ("tokens_per_char", self.tokens_per_char),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Printable ASCII, newline and tab always get a token, so English, digits and code never
/// become `<|unknown|>` even when the corpus lacks them.
fn always_kept() -> impl Iterator<Item = char> {
    (' '..='~').chain(['\n', '\t'])
}

pub fn build_vocabulary(texts: &[&str], opts: &BuildOptions) -> Result<(Tokenizer, BuildReport)> {
    with_threads(opts.threads, |_| build_in_pool(texts, opts))
}

fn build_in_pool(texts: &[&str], opts: &BuildOptions) -> Result<(Tokenizer, BuildReport)> {
    let fail = |m: String| Err(TokenizerError::Build(m));
    if !opts.special_tokens.iter().any(|s| s == UNKNOWN_TOKEN) {
        return fail(format!("special_tokens must include {UNKNOWN_TOKEN}"));
    }
    if texts.iter().all(|t| t.is_empty()) {
        return fail("the corpus is empty".into());
    }
    if opts.max_token_chars < 1 {
        return fail("max_token_chars must be at least 1".into());
    }
    let byte_count = if opts.byte_fallback { 256 } else { 0 };
    let base = opts.special_tokens.len() + byte_count + always_kept().count();
    if opts.vocab_size < base {
        return fail(format!(
            "vocab_size {} is below the {} special tokens plus {} byte tokens plus {} ASCII characters every vocabulary keeps",
            opts.vocab_size,
            opts.special_tokens.len(),
            byte_count,
            always_kept().count()
        ));
    }

    let lines = count_lines(texts);
    let newlines: u64 = texts
        .iter()
        .map(|t| t.bytes().filter(|&b| b == b'\n').count() as u64)
        .sum();
    let mut report = BuildReport::default();
    let (chars, chars_report) = choose_chars(&lines, newlines, opts, byte_count);
    report.distinct_chars = chars_report.0;
    report.corpus_chars = chars_report.1;
    report.char_coverage = chars_report.2;
    report.kept_chars = chars.len();

    let mut vocab: Vec<String> = opts.special_tokens.clone();
    vocab.extend((0..byte_count).map(|b| byte_token(b as u8)));
    vocab.extend(chars.iter().map(|c| c.to_string()));
    let special_count = opts.special_tokens.len();
    let mut tokenizer = assemble(&vocab, special_count)?;
    let mut in_vocab: FxHashSet<String> = vocab.iter().cloned().collect();

    while vocab.len() < opts.vocab_size {
        let room = opts.vocab_size - vocab.len();
        let step = (room / 10).max(64).min(room);
        let candidates = count_pair_candidates(&tokenizer, &lines, opts.max_token_chars, step);
        report.rounds += 1;
        let mut added = 0;
        for (text, count) in candidates {
            if added == step || count < 2 {
                break;
            }
            if in_vocab.insert(text.clone()) {
                vocab.push(text);
                added += 1;
            }
        }
        if added == 0 {
            break;
        }
        tokenizer = assemble(&vocab, special_count)?;
    }

    // Final order: special tokens, byte tokens, then the rest sorted by code point (like the
    // original project). Byte tokens before every character token also keeps llama.cpp's byte
    // trie (where a later id overwrites an earlier one of the same bytes) on the character tokens.
    let mut rest = vocab.split_off(special_count + byte_count);
    rest.sort_unstable();
    report.multi_char_tokens = rest.iter().filter(|t| t.chars().nth(1).is_some()).count();
    vocab.extend(rest);
    let tokenizer = assemble(&vocab, special_count)?;
    let tokens: usize = lines
        .par_iter()
        .map(|(l, n)| tokenizer.encode(l, false).len() * *n as usize)
        .sum();
    // Lines were encoded without their newlines: each is one more token.
    report.tokens_per_char = (tokens as u64 + newlines) as f64 / report.corpus_chars.max(1) as f64;
    Ok((tokenizer, report))
}

fn assemble(vocab: &[String], special_count: usize) -> Result<Tokenizer> {
    let special = (0..vocab.len()).map(|i| i < special_count).collect();
    Tokenizer::from_tokens(vocab.to_vec(), special)
}

/// Distinct lines (newline excluded) with how often each occurs: corpora repeat lines a lot.
fn count_lines<'a>(texts: &[&'a str]) -> Vec<(&'a str, u64)> {
    let mut counts: FxHashMap<&'a str, u64> = FxHashMap::default();
    for text in texts {
        for line in text.split('\n') {
            *counts.entry(line).or_default() += 1;
        }
    }
    let mut lines: Vec<(&str, u64)> = counts.into_iter().filter(|(l, _)| !l.is_empty()).collect();
    lines.sort_unstable();
    lines
}

/// Characters to keep, most frequent first; and (distinct chars, corpus chars, coverage).
fn choose_chars(
    lines: &[(&str, u64)],
    newlines: u64,
    opts: &BuildOptions,
    byte_count: usize,
) -> (Vec<char>, (usize, u64, f64)) {
    let counts = lines
        .par_iter()
        .fold(FxHashMap::<char, u64>::default, |mut m, (line, n)| {
            for c in line.chars() {
                *m.entry(c).or_default() += n;
            }
            m
        })
        .reduce(FxHashMap::default, merge_counts);
    let total: u64 = counts.values().sum::<u64>() + newlines;
    let mut kept: Vec<char> = always_kept().collect();
    let fixed: FxHashSet<char> = kept.iter().copied().collect();
    let mut by_count: Vec<(char, u64)> = counts
        .iter()
        .filter(|(c, n)| !fixed.contains(c) && **n >= opts.min_char_count as u64)
        .map(|(c, n)| (*c, *n))
        .collect();
    by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // Characters may use the whole budget, but keep a quarter for multi-character tokens when the
    // corpus has more distinct characters than that; the rarest characters go first.
    let char_room = opts.vocab_size - opts.special_tokens.len() - byte_count - kept.len();
    let char_budget = if by_count.len() > char_room * 3 / 4 {
        char_room * 3 / 4
    } else {
        char_room
    };
    kept.extend(by_count.iter().take(char_budget).map(|(c, _)| *c));
    let covered: u64 = kept
        .iter()
        .map(|c| counts.get(c).copied().unwrap_or(0))
        .sum::<u64>()
        + newlines;
    let coverage = covered as f64 / total.max(1) as f64;
    (kept, (counts.len(), total, coverage))
}

/// Concatenations of adjacent token pairs in the current segmentation, most frequent first;
/// only the strongest `4 * wanted` pairs (ties included) are turned into strings.
fn count_pair_candidates(
    tokenizer: &Tokenizer,
    lines: &[(&str, u64)],
    max_chars: usize,
    wanted: usize,
) -> Vec<(String, u64)> {
    let unknown = tokenizer.unknown_id();
    let tokens = tokenizer.tokens();
    // Fallback tokens (unknown, bytes) stand for text they do not spell: never part of a pair.
    let fallback = |id: u32| id == unknown || tokenizer.byte_value(id).is_some();
    let lens: Vec<usize> = tokens.iter().map(|t| t.chars().count()).collect();
    let pairs = lines
        .par_iter()
        .fold(FxHashMap::<u64, u64>::default, |mut m, (line, n)| {
            let ids = tokenizer.encode(line, false);
            for w in ids.windows(2) {
                let (a, b) = (w[0], w[1]);
                if !fallback(a) && !fallback(b) && lens[a as usize] + lens[b as usize] <= max_chars
                {
                    *m.entry((u64::from(a) << 32) | u64::from(b)).or_default() += n;
                }
            }
            m
        })
        .reduce(FxHashMap::default, merge_counts);
    let mut ranked: Vec<(u64, u64)> = pairs.into_iter().map(|(k, n)| (n, k)).collect();
    let keep = wanted.saturating_mul(4).max(1);
    if ranked.len() > keep {
        // The threshold is the keep-th largest count, whatever order the table iterated in.
        ranked.select_nth_unstable_by(keep, |a, b| b.0.cmp(&a.0));
        let threshold = ranked[keep].0;
        ranked.retain(|p| p.0 >= threshold);
    }
    // Different splits of one string ("ab"+"c", "a"+"bc") count together.
    let mut by_text: FxHashMap<String, u64> = FxHashMap::default();
    for (n, key) in ranked {
        let (a, b) = ((key >> 32) as usize, (key & 0xFFFF_FFFF) as usize);
        let mut s = String::with_capacity(tokens[a].len() + tokens[b].len());
        s.push_str(&tokens[a]);
        s.push_str(&tokens[b]);
        *by_text.entry(s).or_default() += n;
    }
    let mut out: Vec<(String, u64)> = by_text.into_iter().collect();
    out.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

fn merge_counts<K: std::hash::Hash + Eq>(
    mut a: FxHashMap<K, u64>,
    b: FxHashMap<K, u64>,
) -> FxHashMap<K, u64> {
    if a.len() < b.len() {
        return merge_counts(b, a);
    }
    for (k, v) in b {
        *a.entry(k).or_default() += v;
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(vocab_size: usize) -> BuildOptions {
        BuildOptions {
            vocab_size,
            special_tokens: vec!["<|padding|>".into(), UNKNOWN_TOKEN.into()],
            min_char_count: 1,
            max_token_chars: 8,
            threads: Some(2),
            byte_fallback: false,
        }
    }

    #[test]
    fn learns_frequent_words_and_is_deterministic() {
        let text = "我们的世界我们的天空\n我们的世界\n你好世界\n".repeat(50);
        let (t, report) = build_vocabulary(&[&text], &opts(130)).unwrap();
        assert_eq!(t.tokens()[0], "<|padding|>");
        assert_eq!(t.unknown_id(), 1);
        assert!(report.multi_char_tokens > 0);
        assert!(
            t.encode("我们的世界", false).len() <= 2,
            "{:?}",
            t.encode("我们的世界", false)
        );
        assert!((report.char_coverage - 1.0).abs() < 1e-12);
        let (again, _) = build_vocabulary(&[&text], &opts(130)).unwrap();
        assert_eq!(again.to_json_string(), t.to_json_string());
        assert!(t.vocab_size() <= 130);
    }

    #[test]
    fn byte_fallback_reserves_the_byte_tokens_after_the_special_ones() {
        let text = "我们的世界我们的天空\n我们的世界\n你好世界\n".repeat(50);
        let mut o = opts(130 + 256);
        o.byte_fallback = true;
        let (t, _) = build_vocabulary(&[&text], &o).unwrap();
        assert!(t.has_byte_fallback());
        for b in 0..=255u8 {
            assert_eq!(t.byte_id(b), Some(2 + u32::from(b)));
        }
        // No multi-character token was made of byte tokens.
        assert!(t.tokens()[258..].iter().all(|s| !s.contains("<0x")));
        assert!(t.encode("我们的世界", false).len() <= 2);
        let unseen = "债券 €";
        let ids = t.encode(unseen, false);
        assert!(!ids.contains(&t.unknown_id()));
        assert_eq!(t.decode(&ids).unwrap(), unseen);
        o.vocab_size = 200;
        assert!(build_vocabulary(&[&text], &o)
            .unwrap_err()
            .to_string()
            .contains("256 byte tokens"));
    }

    #[test]
    fn refuses_impossible_requests() {
        assert!(build_vocabulary(&[""], &opts(200)).is_err());
        assert!(build_vocabulary(&["abc"], &opts(10)).is_err());
        let mut o = opts(200);
        o.special_tokens = vec!["<|bos|>".into()];
        assert!(build_vocabulary(&["abc"], &o)
            .unwrap_err()
            .to_string()
            .contains(UNKNOWN_TOKEN));
    }
}
