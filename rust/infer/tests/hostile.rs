//! Careless and hostile input to the engine: sizes a file or a caller sets are bounded or used
//! lazily, and thread counts are bounded before any thread starts.
mod common;

use common::{config, encode_with, refs, tokens, weights};
use nano_infer::format::{v2026, DType, ModelConfig};
use nano_infer::{max_threads, Engine, GenerateOptions, Model};

/// A file may declare a context far longer than it is used: the KV cache and RoPE tables grow
/// with the positions used, so loading allocates nothing for the declared context.
#[test]
fn a_huge_declared_context_allocates_only_what_is_used() {
    let c = ModelConfig {
        block_size: 1 << 20,
        ..config()
    };
    let bytes = encode_with(&c, DType::Q8_0);
    assert!(bytes.len() < 1 << 16, "the file stays small");
    let mut e = Engine::new(Model::from_bytes(bytes).unwrap(), Some(1)).unwrap();
    assert_eq!(e.reserved(), 0);
    e.logits(&[2, 5, 6]).unwrap();
    assert!(e.reserved() >= 3 && e.reserved() <= 16, "{}", e.reserved());
    let opts = GenerateOptions {
        max_new_tokens: 40,
        temperature: 0.0,
        ..Default::default()
    };
    let s = e.generate_ids(vec![4, 5], &opts, &mut |_| true).unwrap();
    let used = s.prompt_tokens + s.generated_tokens;
    assert!(
        e.reserved() >= used && e.reserved() <= 2 * used.max(16),
        "{}",
        e.reserved()
    );
    // reserving past the context is an error, not an allocation
    let err = e.reserve((1 << 20) + 1).unwrap_err().to_string();
    assert!(err.contains("exceed the context"), "{err}");
}

/// Growing the cache keeps what it holds: generating with a cache that grows (16 -> 32 -> 64
/// positions) samples the same text as with one reserved whole up front (at temperature 1.5 a
/// lost or misplaced cached value changes the draws).
#[test]
fn a_growing_cache_generates_what_a_full_one_does() {
    let c = ModelConfig {
        block_size: 64,
        ..config()
    };
    // without <|eos|> in the vocabulary, generation runs until the context is full
    let mut vocab = tokens(c.vocab_size);
    vocab.tokens[3] = "<|sep|>".into();
    let w = weights(&c);
    for (dtype, seed) in [(DType::F32, 7), (DType::Q8_0, 8), (DType::F16, 9)] {
        let bytes = v2026::encode_model(&c, &vocab, None, &refs(&w), dtype).unwrap();
        let run = |reserve: bool| {
            let model = Model::from_bytes(bytes.clone()).unwrap();
            let mut e = Engine::new(model, Some(1)).unwrap();
            if reserve {
                e.reserve(64).unwrap();
                assert_eq!(e.reserved(), 64);
            }
            let opts = GenerateOptions {
                max_new_tokens: 60,
                temperature: 1.5,
                seed,
                ..Default::default()
            };
            let mut text = String::new();
            let stats = e
                .generate_ids(vec![4, 5, 6], &opts, &mut |p| {
                    text.push_str(p);
                    true
                })
                .unwrap();
            (text, stats.generated_tokens, e.reserved())
        };
        let (lazy, n, grown) = run(false);
        let (full, m, _) = run(true);
        assert_eq!((&lazy, n), (&full, m), "{dtype:?}");
        assert_eq!(
            (n, grown),
            (60, 64),
            "{dtype:?}: the cache grew to the context"
        );
    }
}

#[test]
fn thread_counts_are_bounded_before_any_thread_starts() {
    let model = || Model::from_bytes(encode_with(&config(), DType::F32)).unwrap();
    let max = max_threads();
    for bad in [0, max + 1, 10_000, 1_000_000_000_000, usize::MAX] {
        let err = Engine::new(model(), Some(bad)).unwrap_err().to_string();
        assert!(
            err.contains("threads must be between 1 and") && err.contains(&bad.to_string()),
            "{bad}: {err}"
        );
    }
    let mut e = Engine::new(model(), Some(2.min(max))).unwrap();
    assert_eq!(e.logits(&[2, 5]).unwrap().len(), 2 * 12);
}
