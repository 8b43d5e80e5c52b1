//! Bodies of the cargo-fuzz targets in `rust/tokenizer/fuzz` (nightly only). The same bodies run
//! on stable in a plain test with pseudo-random inputs, so they cannot rot.
use crate::{byte_token, StreamDecoder, Tokenizer, UNKNOWN_TOKEN};

/// Any bytes as a vocabulary file: loading must fail cleanly or round-trip exactly.
pub fn vocab_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tok) = Tokenizer::from_json_str(text) {
        let json = tok.to_json_string();
        let again = Tokenizer::from_json_str(&json).expect("the tokenizer's own JSON must load");
        assert_eq!(again.to_json_string(), json);
        assert_eq!(again.hash_hex(), tok.hash_hex());
    }
}

/// Bytes as `vocabulary \x01 text` (vocabulary entries separated by \x02; entries starting with
/// '<' are special; an odd length adds the 256 byte tokens): encoding must equal the naive rule,
/// safe cuts must not change the result, and decoding (whole or streamed) must give the text
/// back when nothing was unknown, which byte fallback guarantees.
pub fn encode(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let (vocab_part, text) = s.split_once('\u{1}').unwrap_or((&s, &s));
    let mut tokens = vec![UNKNOWN_TOKEN.to_string()];
    if data.len() % 2 == 1 {
        tokens.extend((0..=255u8).map(byte_token));
    }
    for t in vocab_part.split('\u{2}').take(64) {
        // A byte token's spelling is only ever part of the text (the set is all or none).
        if !t.is_empty() && !tokens.iter().any(|x| x == t) && crate::parse_byte_token(t).is_none() {
            tokens.push(t.to_string());
        }
    }
    let special = tokens
        .iter()
        .map(|t| t.starts_with('<') && crate::parse_byte_token(t).is_none())
        .collect();
    let tok = Tokenizer::from_tokens(tokens, special).expect("deduplicated non-empty tokens");
    for allow in [false, true] {
        let ids = tok.encode(text, allow);
        assert_eq!(ids, naive_encode(&tok, text, allow));
        let back = tok.decode(&ids).expect("ids from encode are in range");
        if !ids.contains(&tok.unknown_id()) {
            assert_eq!(back, text);
        }
        if tok.has_byte_fallback() {
            assert!(!ids.contains(&tok.unknown_id()));
        }
        let mut stream = StreamDecoder::new(&tok);
        for &id in &ids {
            stream.push(id).expect("ids from encode are in range");
        }
        stream.finish();
        assert_eq!(stream.text(), back);
        let cuts = tok.safe_cuts(text, 4, allow);
        let pieces: Vec<u32> = cuts
            .windows(2)
            .flat_map(|w| tok.encode(&text[w[0]..w[1]], allow))
            .collect();
        assert_eq!(pieces, ids);
    }
}

/// The matching rule spelled out directly: at each character try every length, longest first.
pub fn naive_encode(tok: &Tokenizer, text: &str, allow_special: bool) -> Vec<u32> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let found = (1..=chars.len() - i).rev().find_map(|n| {
            let s: String = chars[i..i + n].iter().collect();
            tok.token_to_id(&s)
                .filter(|&id| allow_special || !tok.is_special(id))
                .filter(|&id| tok.byte_value(id).is_none())
                .map(|id| (id, n))
        });
        match found {
            Some((id, n)) => {
                out.push(id);
                i += n;
            }
            None => {
                let mut utf8 = [0u8; 4];
                match tok.has_byte_fallback() {
                    true => chars[i]
                        .encode_utf8(&mut utf8)
                        .bytes()
                        .for_each(|b| out.push(tok.token_to_id(&byte_token(b)).unwrap())),
                    false => out.push(tok.unknown_id()),
                }
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random byte strings biased towards the interesting bytes.
    fn inputs(count: usize) -> impl Iterator<Item = Vec<u8>> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let pieces: [&[u8]; 14] = [
            b"a",
            b"b",
            b"ab",
            "中".as_bytes(),
            "文".as_bytes(),
            b"<",
            b"|",
            b">",
            b"\x01",
            b"\x02",
            b"\xff",
            b"\"",
            "😀".as_bytes(),
            "<0x41>".as_bytes(),
        ];
        (0..count).map(move |_| {
            let len = next() % 40;
            (0..len)
                .flat_map(|_| pieces[next() as usize % pieces.len()].to_vec())
                .collect()
        })
    }

    #[test]
    fn encode_fuzz_body_on_random_inputs() {
        for data in inputs(3000) {
            encode(&data);
        }
    }

    #[test]
    fn vocab_json_fuzz_body_on_random_and_mutated_inputs() {
        let good = r#"{"vocab_size": 2, "stoi": {"<|unknown|>": 0, "a": 1}, "itos": ["<|unknown|>", "a"], "special_tokens": {"<|unknown|>": 0}}"#;
        vocab_json(good.as_bytes());
        let mut state = 1u64;
        for data in inputs(500) {
            vocab_json(&data);
            // Flip one byte of a valid file.
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let mut bytes = good.as_bytes().to_vec();
            let i = (state >> 33) as usize % bytes.len();
            bytes[i] = data.first().copied().unwrap_or(b'0');
            vocab_json(&bytes);
        }
    }
}
