//! Unit tests of the public `Tokenizer` API against a naive longest-match reference.
use super::*;

const SPECIALS: [&str; 7] = [
    "<|padding|>",
    "<|unknown|>",
    "<|bos|>",
    "<|eos|>",
    "<|instruct_mark|>",
    "<|response_mark|>",
    "<|BD4SUR|>",
];

fn small() -> Tokenizer {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    let mut special = vec![true; tokens.len()];
    for t in [
        "<", "|", "e", "o", "s", ">", "a", "b", "ab", "abc", "中", "中文", "文", "😀", "\n",
    ] {
        tokens.push(t.into());
        special.push(false);
    }
    Tokenizer::from_tokens(tokens, special).unwrap()
}

use crate::fuzzing::naive_encode as naive;

#[test]
fn encodes_by_longest_match_with_unknowns() {
    let t = small();
    let id = |s: &str| t.token_to_id(s).unwrap();
    assert_eq!(t.encode("abcab", false), vec![id("abc"), id("ab")]);
    assert_eq!(t.encode("中文中x", false), vec![id("中文"), id("中"), 1]);
    assert_eq!(t.encode("", false), Vec::<u32>::new());
    assert_eq!(t.encode("😀é", false), vec![id("😀"), 1]);
}

#[test]
fn special_strings_match_only_on_request() {
    let t = small();
    assert_eq!(
        t.encode("a<|eos|>", true),
        vec![t.token_to_id("a").unwrap(), 3]
    );
    let plain = t.encode("<|eos|>", false);
    assert_eq!(plain.len(), 7);
    assert!(plain.iter().all(|&i| !t.is_special(i) || i == 1));
    assert_eq!(t.decode(&plain).unwrap(), "<|eos|>");
}

#[test]
fn agrees_with_naive_reference_on_random_text() {
    let t = small();
    let alphabet: Vec<char> = "abc中文😀<|eos>x\né".chars().collect();
    let mut state = 0x1234_5678_9abc_def0u64;
    for _ in 0..2000 {
        let len = (state >> 60) as usize + 1;
        let text: String = (0..len * 2)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                alphabet[(state >> 33) as usize % alphabet.len()]
            })
            .collect();
        for allow in [false, true] {
            assert_eq!(
                t.encode(&text, allow),
                naive(&t, &text, allow),
                "{text:?} allow={allow}"
            );
        }
    }
}

#[test]
fn decode_round_trips_and_rejects_bad_ids() {
    let t = small();
    let text = "中文ab\n😀abc";
    assert_eq!(t.decode(&t.encode(text, false)).unwrap(), text);
    let err = t.decode(&[0, 9999]).unwrap_err().to_string();
    assert!(
        err.contains("9999") && err.contains("out of range"),
        "{err}"
    );
}

#[test]
fn stream_decoder_yields_pieces() {
    let t = small();
    let ids = t.encode("ab中文<|eos|>", true);
    let mut d = StreamDecoder::new(&t);
    let pieces: Vec<String> = ids
        .iter()
        .map(|&i| d.push(i).unwrap().to_string())
        .collect();
    assert_eq!(pieces, ["ab", "中文", "<|eos|>"]);
    let mut quiet = StreamDecoder::skipping_special(&t);
    for &i in &ids {
        quiet.push(i).unwrap();
    }
    assert_eq!(quiet.text(), "ab中文");
    assert!(d.push(10_000).is_err());
}

#[test]
fn from_tokens_rejects_bad_lists() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases = [
        (
            s(&["<|unknown|>", "a", "a"]),
            vec![true, false, false],
            "twice",
        ),
        (s(&["<|unknown|>", ""]), vec![true, false], "empty"),
        (s(&["a"]), vec![false], "<|unknown|>"),
        (s(&["<|unknown|>"]), vec![], "flags"),
    ];
    for (tokens, special, needle) in cases {
        let err = Tokenizer::from_tokens(tokens, special)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn json_round_trip_keeps_hash_and_flags() {
    let t = small();
    let back = Tokenizer::from_json_str(&t.to_json_string()).unwrap();
    assert_eq!(back.hash_hex(), t.hash_hex());
    assert_eq!(back.to_json_string(), t.to_json_string());
    assert_eq!(back.special_tokens().len(), 7);
    assert_eq!(t.hash_hex().len(), 16);
}

#[test]
fn reference_vocabulary_is_byte_stable() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/tokenizer_16384.json"
    );
    let Ok(original) = std::fs::read_to_string(path) else {
        eprintln!("skipped: {path} not found");
        return;
    };
    let t = Tokenizer::from_json_str(&original).unwrap();
    assert_eq!(t.vocab_size(), 16384);
    assert_eq!(t.to_json_string(), original);
    let names: Vec<&str> = t.special_tokens().iter().map(|p| p.0).collect();
    assert_eq!(names, SPECIALS);
    assert_eq!(t.unknown_id(), 1);
}

#[test]
fn parallel_encoding_equals_sequential() {
    // Tokens that cross most positions make safe cuts rare; the result must still be identical.
    let t = small();
    let unit = "abcab中文中<|eos|>😀x\n";
    let text = unit.repeat(20_000);
    let seq = t.encode(&text, true);
    for threads in [Some(1), Some(2), Some(3), None] {
        assert_eq!(t.encode_parallel(&text, true, threads), seq);
    }
    let texts = vec![text.as_str(), "ab", "", unit];
    let batch = t.encode_batch(&texts, false, Some(2));
    let expect: Vec<Vec<u32>> = texts.iter().map(|x| t.encode(x, false)).collect();
    assert_eq!(batch, expect);
}

#[test]
fn flat_encoding_equals_the_concatenation() {
    // Multi-character tokens leave gaps between the pieces' shares of the output: the flat result
    // must still be the plain concatenation, with and without separators, for any thread count.
    let t = small();
    let long = "abcab中文中<|eos|>😀x\nababab".repeat(20_000);
    let texts = [long.as_str(), "", "abc", &long[..long.len() / 2], ""];
    for separator in [None, Some(3)] {
        let want: Vec<u32> = texts
            .iter()
            .flat_map(|x| t.encode(x, true).into_iter().chain(separator))
            .collect();
        for threads in [Some(1), Some(2), Some(3), None] {
            let wide: Vec<u32> = t.encode_flat(&texts, true, threads, separator);
            assert_eq!(wide, want, "{threads:?} {separator:?}");
            let narrow: Vec<u16> = t.encode_flat(&texts, true, threads, separator);
            assert!(narrow.iter().map(|&v| v as u32).eq(want.iter().copied()));
        }
    }
    let none: Vec<u16> = t.encode_flat(&[], false, Some(2), Some(3));
    assert!(none.is_empty());
}

#[test]
fn safe_cuts_are_token_boundaries() {
    let t = small();
    let text = "abcabab中文文中".repeat(50);
    let cuts = t.safe_cuts(&text, 8, false);
    assert!(cuts.len() > 2, "{cuts:?}");
    let whole = t.encode(&text, false);
    let pieces: Vec<u32> = cuts
        .windows(2)
        .flat_map(|w| t.encode(&text[w[0]..w[1]], false))
        .collect();
    assert_eq!(pieces, whole);
    // Between "a" and "b" of "ab" is never safe.
    assert!(!t.is_safe_cut("ab", 1, false));
    assert!(t.is_safe_cut("ba", 1, false));
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}

/// `small()` plus the 256 byte tokens after the special ones.
fn small_with_bytes() -> Tokenizer {
    let base = small();
    let n_special = SPECIALS.len();
    let mut tokens: Vec<String> = base.tokens()[..n_special].to_vec();
    tokens.extend((0..=255u8).map(byte_token));
    tokens.extend(base.tokens()[n_special..].iter().cloned());
    let special = (0..tokens.len()).map(|i| i < n_special).collect();
    Tokenizer::from_tokens(tokens, special).unwrap()
}

#[test]
fn byte_fallback_spells_unknown_characters_as_bytes() {
    let t = small_with_bytes();
    let id = |s: &str| t.token_to_id(s).unwrap();
    let b = |x: u8| t.byte_id(x).unwrap();
    assert!(t.has_byte_fallback() && !small().has_byte_fallback());
    // 债 = E5 80 BA; é = C3 A9; "<0x41>" typed as text is six ordinary characters, not a byte.
    assert_eq!(
        t.encode("ab债é", false),
        vec![id("ab"), b(0xE5), b(0x80), b(0xBA), b(0xC3), b(0xA9)]
    );
    assert_eq!(t.encode("<0x41>", false)[0], id("<"));
    assert!(!t.encode("<0x41>", false).contains(&b(0x41)));
    for text in ["ab债é", "<0x41>", "中文x😀\u{0}\u{10FFFF}", ""] {
        let ids = t.encode(text, false);
        assert!(!ids.contains(&t.unknown_id()));
        assert_eq!(t.decode(&ids).unwrap(), text);
        assert_eq!(ids, naive(&t, text, false));
    }
    assert_eq!(t.byte_value(b(0x41)), Some(0x41));
    assert_eq!(t.byte_value(id("a")), None);
    assert_eq!(t.max_token_chars(), small().max_token_chars());
}

#[test]
fn decode_replaces_bytes_that_form_no_character() {
    let t = small_with_bytes();
    let b = |x: u8| t.byte_id(x).unwrap();
    let a = t.token_to_id("a").unwrap();
    // An incomplete character before an ordinary token, a lone continuation byte, and an
    // incomplete tail: each one U+FFFD, as String::from_utf8_lossy does.
    let ids = [b(0xE5), b(0x80), a, b(0x80), a, b(0xF0), b(0x9F)];
    assert_eq!(t.decode(&ids).unwrap(), "\u{FFFD}a\u{FFFD}a\u{FFFD}");
    let mut d = StreamDecoder::new(&t);
    let pieces: Vec<String> = ids
        .iter()
        .map(|&i| d.push(i).unwrap().to_string())
        .collect();
    assert_eq!(pieces, ["", "", "\u{FFFD}a", "\u{FFFD}", "a", "", ""]);
    assert_eq!(d.finish(), "\u{FFFD}");
    assert_eq!(d.text(), t.decode(&ids).unwrap());
}

#[test]
fn stream_decoder_emits_a_split_character_whole() {
    let t = small_with_bytes();
    let ids = t.encode("a😀债b", false);
    let mut d = StreamDecoder::skipping_special(&t);
    let pieces: Vec<String> = ids
        .iter()
        .map(|&i| d.push(i).unwrap().to_string())
        .collect();
    // 😀 is a token; 债 is three byte tokens and comes out with the third.
    assert_eq!(pieces, ["a", "😀", "", "", "债", "b"]);
    assert_eq!(d.finish(), "");
}

#[test]
fn byte_fallback_round_trips_pseudo_random_unicode() {
    let t = small_with_bytes();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..2000 {
        let mut text = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for k in 0..(state % 24) {
            let r = state.rotate_left(k as u32 * 5);
            // Mix vocabulary characters, ASCII, CJK, astral planes and every surrogate-free range.
            let c = match r % 5 {
                0 => ['a', 'b', '中', '文', '😀'][(r >> 8) as usize % 5],
                1 => char::from_u32((r >> 8) as u32 % 0x80).unwrap(),
                2 => char::from_u32(0x4E00 + (r >> 8) as u32 % 0x5200).unwrap(),
                _ => char::from_u32((r >> 8) as u32 % 0x11_0000).unwrap_or('\u{FFFD}'),
            };
            text.push(c);
        }
        let ids = t.encode(&text, false);
        assert_eq!(t.decode(&ids).unwrap(), text);
        assert_eq!(ids, naive(&t, &text, false));
        let mut d = StreamDecoder::new(&t);
        for &i in &ids {
            d.push(i).unwrap();
        }
        assert_eq!(d.finish(), "");
        assert_eq!(d.text(), text);
    }
}
