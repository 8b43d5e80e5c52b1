//! Encode throughput (bytes of UTF-8 per second) on the shared Chinese corpora with the
//! reference vocabulary, 1 thread and all threads. Falls back to synthetic text and a synthetic
//! vocabulary when ../shared/data is absent.
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nano_tokenizer::{build_vocabulary, BuildOptions, Tokenizer};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

fn fixture() -> (Tokenizer, String) {
    let vocab = Tokenizer::from_file(format!("{DATA}/tokenizer_16384.json"));
    let corpus: Vec<String> = ["pretrain_psycho.txt", "pretrain_amateur_radio.txt"]
        .iter()
        .filter_map(|n| std::fs::read_to_string(format!("{DATA}/{n}")).ok())
        .collect();
    match vocab {
        Ok(tok) if !corpus.is_empty() => (tok, corpus.concat()),
        _ => {
            let mut tokens: Vec<String> = vec!["<|unknown|>".into()];
            tokens.extend(
                (0x4E00u32..0x5E00)
                    .filter_map(char::from_u32)
                    .map(String::from),
            );
            let special = (0..tokens.len()).map(|i| i == 0).collect();
            let text: String = (0..1_000_000u32)
                .filter_map(|i| char::from_u32(0x4E00 + i * 7 % 0x1000))
                .collect();
            (
                Tokenizer::from_tokens(tokens, special).expect("synthetic vocabulary"),
                text,
            )
        }
    }
}

fn encode(c: &mut Criterion) {
    let (tok, text) = fixture();
    let mut group = c.benchmark_group("encode");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("1 thread", |b| {
        b.iter(|| black_box(tok.encode(black_box(&text), false)))
    });
    group.bench_function("all threads", |b| {
        b.iter(|| black_box(tok.encode_parallel(black_box(&text), false, None)))
    });
    let lines: Vec<&str> = text.lines().collect();
    group.bench_function("batch of lines, all threads", |b| {
        b.iter(|| black_box(tok.encode_batch(black_box(&lines), false, None)))
    });
    // A vocabulary with ~13k multi-character Chinese tokens: most steps need hash lookups.
    let corpus: Vec<&str> = text.split('\n').collect();
    let opts = BuildOptions {
        vocab_size: 16384,
        special_tokens: vec!["<|padding|>".into(), "<|unknown|>".into()],
        min_char_count: 1,
        max_token_chars: 16,
        threads: None,
        byte_fallback: false,
    };
    if let Ok((built, _)) = build_vocabulary(&corpus, &opts) {
        group.bench_function("1 thread, built 16k vocabulary", |b| {
            b.iter(|| black_box(built.encode(black_box(&text), false)))
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
