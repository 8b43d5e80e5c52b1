//! Small hand-made vocabularies whose ids can be worked out by hand; the comparisons with HF
//! `tokenizers` on real-sized vocabularies are in tests/test_bpe_tokenizer.py.
use super::*;

fn byte_level_spec() -> BpeSpec {
    let mut vocab: Vec<(String, u32)> = (0..256)
        .map(|b| (byte_level::BYTE_TO_CHAR[b].to_string(), b as u32))
        .collect();
    for (i, t) in ["Ġt", "he", "Ġthe"].iter().enumerate() {
        vocab.push((t.to_string(), 256 + i as u32));
    }
    BpeSpec {
        family: Family::ByteLevel {
            pattern: Pattern::Gpt2,
            add_prefix_space: false,
        },
        normalizer: Normalizer::default(),
        vocab,
        merges: [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        added: vec![AddedToken {
            id: 259,
            content: "<|eos|>".into(),
            special: true,
            normalized: false,
        }],
        ignore_merges: false,
        strip_leading_space: false,
        config: HfConfig::default(),
    }
}

#[test]
fn byte_level_merges_by_rank_and_special_tokens_only_when_allowed() {
    let tok = BpeTokenizer::from_spec(byte_level_spec()).unwrap();
    let t = u32::from(b't');
    assert_eq!(tok.encode("the the<|eos|>", true), [t, 257, 258, 259]);
    let plain = tok.encode("the the<|eos|>", false);
    assert_eq!(&plain[..3], [t, 257, 258]);
    assert_eq!(plain[3..], b"<|eos|>".map(u32::from));
    assert_eq!(tok.decode(&plain, false).unwrap(), "the the<|eos|>");
    assert_eq!(tok.decode(&[t, 259], true).unwrap(), "t");
    // A lone continuation byte decodes to U+FFFD; out-of-range ids are an error.
    assert_eq!(tok.decode(&[0xA9], false).unwrap(), "\u{fffd}");
    assert!(matches!(
        tok.decode(&[260], false),
        Err(TokenizerError::IdOutOfRange { id: 260, .. })
    ));
}

#[test]
fn whole_piece_lookup_only_takes_tokens_the_merges_reproduce() {
    let mut spec = byte_level_spec();
    // "he" merges to one token, but nothing merges "eh": a vocabulary entry "eh" that the
    // merges never build must not be taken for the piece "eh" without `ignore_merges`.
    spec.vocab.push(("eh".into(), 260));
    let tok = BpeTokenizer::from_spec(spec.clone()).unwrap();
    assert_eq!(tok.encode("eh", false), [u32::from(b'e'), u32::from(b'h')]);
    spec.ignore_merges = true;
    let tok = BpeTokenizer::from_spec(spec).unwrap();
    assert_eq!(tok.encode("eh", false), [260]);
}

fn sentencepiece_spec() -> BpeSpec {
    let mut vocab = vec![("<unk>".to_string(), 0)];
    vocab.extend((0..256).map(|b| (format!("<0x{b:02X}>"), 1 + b)));
    for (i, t) in ["▁", "a", "b", "▁a"].iter().enumerate() {
        vocab.push((t.to_string(), 257 + i as u32));
    }
    BpeSpec {
        family: Family::SentencePiece {
            byte_fallback: true,
            unk_token: Some("<unk>".into()),
            fuse_unk: true,
        },
        normalizer: Normalizer {
            steps: vec![
                Step::Prepend("▁".into()),
                Step::Replace {
                    pattern: " ".into(),
                    content: "▁".into(),
                },
            ],
        },
        vocab,
        merges: vec![("▁".into(), "a".into())],
        added: vec![AddedToken {
            id: 0,
            content: "<unk>".into(),
            special: true,
            normalized: false,
        }],
        ignore_merges: false,
        strip_leading_space: true,
        config: HfConfig::default(),
    }
}

#[test]
fn sentencepiece_spaces_and_byte_fallback() {
    let tok = BpeTokenizer::from_spec(sentencepiece_spec()).unwrap();
    assert_eq!(tok.encode("a b", false), [260, 257, 259]);
    assert_eq!(tok.encode("aé", false), [260, 1 + 0xC3, 1 + 0xA9]);
    assert_eq!(
        tok.decode(&tok.encode("a bé", false), false).unwrap(),
        "a bé"
    );
    // Without byte fallback, unknown characters become one fused <unk>.
    let mut spec = sentencepiece_spec();
    spec.family = Family::SentencePiece {
        byte_fallback: false,
        unk_token: Some("<unk>".into()),
        fuse_unk: true,
    };
    let tok = BpeTokenizer::from_spec(spec).unwrap();
    assert_eq!(tok.encode("aéé", false), [260, 0]);
}

#[test]
fn inconsistent_vocabularies_are_refused() {
    let mut gap = byte_level_spec();
    gap.vocab.push(("x y".into(), 300));
    let err = BpeTokenizer::from_spec(gap).unwrap_err().to_string();
    assert!(err.contains("no token has id 260"), "{err}");

    let mut merge = byte_level_spec();
    merge.merges.push(("Ġthe".into(), "he".into()));
    let err = BpeTokenizer::from_spec(merge).unwrap_err().to_string();
    assert!(err.contains("\"Ġthehe\" is not in the vocabulary"), "{err}");

    let mut no_unk = sentencepiece_spec();
    no_unk.vocab.truncate(200);
    no_unk.vocab.push(("<unk>x".into(), 200));
    no_unk.merges.clear();
    no_unk.family = Family::SentencePiece {
        byte_fallback: true,
        unk_token: None,
        fuse_unk: false,
    };
    no_unk.added.clear();
    let err = BpeTokenizer::from_spec(no_unk).unwrap_err().to_string();
    assert!(err.contains("needs an unknown token"), "{err}");
}

#[test]
fn parallel_encoding_matches_serial() {
    let tok = BpeTokenizer::from_spec(byte_level_spec()).unwrap();
    let text = "the cat sat.\nthe  end\n中文。\nthe\tlast  \n".repeat(20_000);
    let serial = tok.encode(&text, true);
    assert!(tok.safe_cuts(&text, 8).len() > 4);
    assert_eq!(tok.encode_parallel(&text, true, Some(3)), serial);
    let batch = tok.encode_batch(&[&text, "the", ""], true, Some(2));
    assert_eq!(batch[0], serial);
    assert_eq!(batch[2], Vec::<u32>::new());
}

/// Streaming keeps multi-byte characters whole, skips special tokens, strips the SentencePiece
/// leading space once, and adds up to `decode` of the same ids.
#[test]
fn stream_decoder_emits_whole_characters() {
    for (spec, text, special) in [
        (byte_level_spec(), "the 😀 é日本 the", 259),
        (sentencepiece_spec(), " aé b😀 a", 0),
    ] {
        let tok = BpeTokenizer::from_spec(spec).unwrap();
        let mut ids = tok.encode(text, false);
        ids.insert(0, special);
        ids.insert(2, special);
        let mut d = BpeStreamDecoder::new(&tok, true);
        let mut pieces = Vec::new();
        for &id in &ids {
            pieces.push(d.push(id).unwrap().to_string());
        }
        pieces.push(d.finish().to_string());
        assert!(pieces.iter().all(|p| !p.contains('\u{fffd}')), "{pieces:?}");
        assert_eq!(pieces.concat(), tok.decode(&ids, true).unwrap());
        // a character's bytes come out together, in the piece of its last byte
        assert!(pieces.iter().any(|p| p.contains('😀')));
        assert!(pieces.iter().filter(|p| p.is_empty()).count() >= 3);
    }
    // an incomplete character is flushed as U+FFFD by finish, as decode writes it
    let tok = BpeTokenizer::from_spec(byte_level_spec()).unwrap();
    let ids = &tok.encode("😀", false)[..2];
    let mut d = BpeStreamDecoder::new(&tok, false);
    assert_eq!(d.push(ids[0]).unwrap(), "");
    assert_eq!(d.push(ids[1]).unwrap(), "");
    assert_eq!(d.finish(), "\u{fffd}");
    assert_eq!(tok.decode(ids, false).unwrap(), "\u{fffd}");
}

/// Byte fallback decodes a run of `<0xNN>` tokens as a whole, as HF's `ByteFallback` decoder:
/// its text when the run is UTF-8, else one U+FFFD per byte (even for bytes that are ASCII).
#[test]
fn byte_fallback_runs_decode_as_hf_does() {
    let tok = BpeTokenizer::from_spec(sentencepiece_spec()).unwrap();
    let (zero, e5, c3, a9, a) = (1 + 0x30, 1 + 0xE5, 1 + 0xC3, 1 + 0xA9, 258);
    assert_eq!(
        tok.decode(&[zero, e5, a], false).unwrap(),
        "\u{fffd}\u{fffd}a"
    );
    assert_eq!(tok.decode(&[zero, c3, a9, a], false).unwrap(), "0éa");
    // a skipped special token does not end a run
    assert_eq!(tok.decode(&[c3, 0, a9], true).unwrap(), "é");
    let mut d = BpeStreamDecoder::new(&tok, true);
    assert_eq!(d.push(zero).unwrap(), "");
    assert_eq!(d.push(c3).unwrap(), "");
    assert_eq!(d.push(a9).unwrap(), "");
    assert_eq!(d.push(a).unwrap(), "0éa");
}

#[test]
fn specs_written_as_tokenizer_json_read_back_the_same() {
    let texts = ["the the<|eos|>", " théâtre\n\n  x", "  hello wörld ✓ 😀"];
    for (spec, llama3) in [
        (byte_level_spec(), false),
        (sentencepiece_spec(), false),
        (byte_level_spec(), true),
    ] {
        let mut spec = spec;
        if llama3 {
            spec.family = Family::ByteLevel {
                pattern: Pattern::Llama3,
                add_prefix_space: false,
            };
            spec.ignore_merges = true;
        }
        let json = spec.to_hf_json();
        let back = hf_json::parse(&json, HfConfig::default()).unwrap();
        assert_eq!(back.family, spec.family);
        assert_eq!(back.normalizer, spec.normalizer);
        assert_eq!(back.merges, spec.merges);
        assert_eq!(back.ignore_merges, spec.ignore_merges);
        assert_eq!(back.strip_leading_space, spec.strip_leading_space);
        let mut want = spec.vocab.clone();
        let mut got = back.vocab.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        let (a, b) = (
            BpeTokenizer::from_spec(spec).unwrap(),
            BpeTokenizer::from_spec(back).unwrap(),
        );
        for t in texts {
            for allow in [false, true] {
                assert_eq!(a.encode(t, allow), b.encode(t, allow), "{t:?}");
            }
            let ids = a.encode(t, true);
            assert_eq!(
                a.decode(&ids, false).unwrap(),
                b.decode(&ids, false).unwrap()
            );
        }
    }
}
