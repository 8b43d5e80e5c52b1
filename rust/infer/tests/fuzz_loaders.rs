//! A deterministic fuzz pass over the model-file and LoRA loaders, run by `cargo test` on stable
//! (the coverage-guided `fuzz/` crate needs nightly). Valid files of both formats are mutated a few
//! thousand times (bit flips, truncations, extensions, header field rewrites, non-finite weights,
//! header JSON edits with the checksum repaired) and every result goes through both loaders. Each
//! must return, never panic; a model that loads must run a forward pass and a short generation.
//!
//! What counts as detectable, and so must be refused:
//! * Nano 2026.1 / 2026.2: any change to the bytes. The checksum covers everything after the preamble, and
//!   the preamble's fields are checked against the file length and each other (its reserved words
//!   must be zero). JSON edits with a repaired checksum are a forger's work, not corruption: they
//!   must not panic, and load only when the table stays consistent.
//! * 2024.10 (no checksum): a length that differs from the one the header implies; a flipped bit
//!   in the fields that define the layout (magic, version, kind, config length, the config values
//!   the loader uses, the quantization type, the vocabulary's length and count); a non-finite
//!   weight. For the shapes below a single
//!   flipped bit of any config value breaks a validity rule or changes the implied length. Flips
//!   in weights, token text, the ignored group size (fp32) or the header padding are not
//!   detectable, and may load.
use std::panic::{catch_unwind, AssertUnwindSafe};

mod common;

use common::{config, encode_hf, encode_legacy, encode_lora, encode_with, hf_config};
use nano_infer::format::{v2026, DType, ModelConfig};
use nano_infer::sampler::SplitMix64;
use nano_infer::{Engine, GenerateOptions, Lora, Model};

/// Mutated files per source file and kind of mutation.
const ROUNDS: usize = 60;

struct Source {
    name: &'static str,
    bytes: Vec<u8>,
    legacy: bool,
    lora: bool,
}

fn sources() -> Vec<Source> {
    let c = ModelConfig {
        n_layer: 1,
        n_hidden: 32,
        ..config()
    };
    let mut out: Vec<Source> = [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0]
        .into_iter()
        .map(|d| Source {
            name: d.name(),
            bytes: encode_with(&c, d),
            legacy: false,
            lora: false,
        })
        .collect();
    out.push(Source {
        name: "legacy-fp32",
        bytes: encode_legacy(&c),
        legacy: true,
        lora: false,
    });
    out.push(Source {
        name: "hf-2026.2",
        bytes: encode_hf(
            &ModelConfig {
                n_layer: 1,
                n_hidden: 32,
                ..hf_config()
            },
            DType::Q8_0,
        ),
        legacy: false,
        lora: false,
    });
    out.push(Source {
        name: "lora-2026",
        bytes: encode_lora(&c, false),
        legacy: false,
        lora: true,
    });
    out.push(Source {
        name: "lora-legacy",
        bytes: encode_lora(&c, true),
        legacy: true,
        lora: true,
    });
    out
}

#[derive(Default)]
struct Tally {
    files: usize,
    refused: usize,
    loaded: usize,
}

/// Loads `bytes` with both loaders (no panic allowed); checks the verdict when `must_fail`, and
/// runs what loads.
fn try_load(src: &Source, case: &str, bytes: &[u8], must_fail: bool, tally: &mut Tally) {
    tally.files += 1;
    let model = catch_unwind(AssertUnwindSafe(|| Model::from_bytes(bytes.to_vec())))
        .unwrap_or_else(|_| panic!("{}: {case}: the model loader panicked", src.name));
    let lora = catch_unwind(AssertUnwindSafe(|| Lora::from_bytes(bytes.to_vec())))
        .unwrap_or_else(|_| panic!("{}: {case}: the LoRA loader panicked", src.name));
    let loaded = if src.lora {
        lora.is_ok()
    } else {
        model.is_ok()
    };
    if must_fail {
        assert!(
            !loaded,
            "{}: {case}: a detectable corruption loaded",
            src.name
        );
    }
    if loaded {
        tally.loaded += 1;
    } else {
        tally.refused += 1;
    }
    if let Ok(model) = model {
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let mut e = Engine::new(model, Some(1)).expect("a loaded model makes an engine");
            e.logits(&[0]).expect("one token");
            let opts = GenerateOptions {
                max_new_tokens: 3,
                temperature: 0.0,
                ..Default::default()
            };
            e.generate_ids(vec![0], &opts, &mut |_| true)
                .expect("generation");
        }));
        assert!(ran.is_ok(), "{}: {case}: the engine panicked", src.name);
    }
}

/// Byte ranges a flipped bit must be detected in, for a 2024.10 file (see the module comment).
fn legacy_layout_bytes(lora: bool) -> Vec<std::ops::Range<usize>> {
    if lora {
        // magic .. config length, rank; n_layer .. n_kv_head (alpha takes any value; n_hidden
        // shapes no wq / wk / wv / wo adapter and is checked against the base at plug-in time;
        // the 8th value and the quantization words are not used by LoRA files)
        vec![0..28, 32..48]
    } else {
        // magic .. quantization type (the group size is ignored for fp32); the tokenizer
        // section's length and count
        vec![0..60, 256..264]
    }
}

fn fix_checksum(b: &mut [u8]) {
    let sum = v2026::checksum(&b[64..]);
    b[48..56].copy_from_slice(&sum.to_le_bytes());
}

/// Byte ranges of the weights (2026.1: from the tensor table; 2024.10: after the header and the
/// tokenizer section, up to the RoPE tables of a tied model).
#[allow(clippy::single_range_in_vec_init)] // a list of ranges that has one entry for 2024.10 files
fn weight_ranges(src: &Source) -> Vec<std::ops::Range<usize>> {
    let b = &src.bytes;
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    if !src.legacy {
        let (header_len, data_offset) = (word(24), word(32));
        let header: serde_json::Value = serde_json::from_slice(&b[64..64 + header_len]).unwrap();
        let tensors = header["tensors"].as_array().unwrap();
        return tensors
            .iter()
            .map(|t| {
                let (offset, nbytes) =
                    (t["offset"].as_u64().unwrap(), t["nbytes"].as_u64().unwrap());
                let start = data_offset + offset as usize;
                start..start + nbytes as usize
            })
            .collect();
    }
    if src.lora {
        return vec![256..b.len()];
    }
    let start = 256 + u32::from_le_bytes(b[256..260].try_into().unwrap()) as usize;
    let c = config();
    let rope = 2 * c.block_size * (c.n_embd / c.n_head / 2) * 4;
    vec![start..b.len() - rope]
}

#[test]
fn mutated_files_never_panic_and_detectable_damage_is_refused() {
    let mut rng = SplitMix64::new(0x6e61_6e6f_6675_7a7a);
    let mut below = |n: usize| (rng.next_u64() % n as u64) as usize;
    let mut total = Tally::default();
    for src in sources() {
        let orig = &src.bytes;
        let len = orig.len();
        let mut tally = Tally::default();
        // the unmutated file loads
        try_load(&src, "original", orig, false, &mut tally);
        assert_eq!(tally.loaded, 1, "{}: the original must load", src.name);

        // every single flipped bit in the layout fields of a 2024.10 header
        if src.legacy {
            for r in legacy_layout_bytes(src.lora) {
                for pos in r {
                    for bit in 0..8 {
                        let mut b = orig.clone();
                        b[pos] ^= 1 << bit;
                        try_load(
                            &src,
                            &format!("header bit {pos}.{bit}"),
                            &b,
                            true,
                            &mut tally,
                        );
                    }
                }
            }
        }

        for round in 0..ROUNDS {
            // 1-3 flipped bits anywhere
            let mut b = orig.clone();
            let mut in_layout = false;
            for _ in 0..1 + below(3) {
                let pos = below(len);
                b[pos] ^= 1 << below(8);
                in_layout |= legacy_layout_bytes(src.lora)
                    .iter()
                    .any(|r| r.contains(&pos));
            }
            let changed = b != *orig;
            let detectable = changed && (!src.legacy || in_layout);
            try_load(
                &src,
                &format!("bit flips {round}"),
                &b,
                detectable,
                &mut tally,
            );

            // truncated anywhere; every other cut within the first KiB (headers, vocabulary)
            let cut = below(if round % 2 == 0 { len.min(1024) } else { len });
            try_load(
                &src,
                &format!("truncated to {cut}"),
                &orig[..cut],
                true,
                &mut tally,
            );

            // extended by 1-100 bytes
            let mut b = orig.clone();
            for _ in 0..1 + below(100) {
                b.push(below(256) as u8);
            }
            try_load(
                &src,
                &format!("extended to {}", b.len()),
                &b,
                true,
                &mut tally,
            );

            // an f32 weight made NaN or infinite (2026.1: checksum repaired, so only the value
            // is wrong)
            if matches!(
                src.name,
                "f32" | "legacy-fp32" | "lora-2026" | "lora-legacy"
            ) {
                let ranges = weight_ranges(&src);
                let r = &ranges[below(ranges.len())];
                let at = r.start + 4 * below(r.len() / 4);
                let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][below(3)];
                let mut b = orig.clone();
                b[at..at + 4].copy_from_slice(&bad.to_le_bytes());
                if !src.legacy {
                    fix_checksum(&mut b);
                }
                try_load(&src, &format!("{bad} at byte {at}"), &b, true, &mut tally);
            }

            // 2026.x preamble fields rewritten (major .. reserved)
            if !src.legacy {
                let fields: [(usize, usize); 9] = [
                    (8, 4),
                    (12, 4),
                    (16, 4),
                    (20, 4),
                    (24, 8),
                    (32, 8),
                    (40, 8),
                    (48, 8),
                    (56, 8),
                ];
                let (at, width) = fields[below(fields.len())];
                let mut word = [0u8; 8];
                word[..width].copy_from_slice(&orig[at..at + width]);
                let old = u64::from_le_bytes(word);
                let mask = if width == 8 {
                    u64::MAX
                } else {
                    (1 << (8 * width)) - 1
                };
                let new = [
                    0,
                    1,
                    old.wrapping_add(1),
                    old.wrapping_sub(1),
                    old.wrapping_mul(2),
                    old.wrapping_add(64),
                    u64::MAX,
                    rng_word(&mut below),
                ][below(8)]
                    & mask;
                let mut b = orig.clone();
                b[at..at + width].copy_from_slice(&new.to_le_bytes()[..width]);
                // a 2026.1 file relabelled 2026.2 is a valid 2026.2 file (2026.2 only adds fields)
                let still_valid = at == 12 && old == 1 && new == 2;
                try_load(
                    &src,
                    &format!("field {at} = {new}"),
                    &b,
                    new != old && !still_valid,
                    &mut tally,
                );

                // one digit of the JSON header changed, checksum repaired: no panic, either verdict
                let header_len = u64::from_le_bytes(orig[24..32].try_into().unwrap()) as usize;
                let digits: Vec<usize> = (64..64 + header_len)
                    .filter(|&i| orig[i].is_ascii_digit())
                    .collect();
                let mut b = orig.clone();
                let at = digits[below(digits.len())];
                b[at] = b'0' + below(10) as u8;
                fix_checksum(&mut b);
                try_load(
                    &src,
                    &format!("header digit at {at}"),
                    &b,
                    false,
                    &mut tally,
                );
            }
        }
        eprintln!(
            "{}: {} files, {} refused, {} loaded",
            src.name, tally.files, tally.refused, tally.loaded
        );
        total.files += tally.files;
        total.refused += tally.refused;
        total.loaded += tally.loaded;
    }
    eprintln!(
        "all: {} files, {} refused, {} loaded",
        total.files, total.refused, total.loaded
    );
    assert!(total.files >= 2000, "{} files", total.files);
}

fn rng_word(below: &mut impl FnMut(usize) -> usize) -> u64 {
    ((below(1 << 31) as u64) << 33) ^ below(1 << 31) as u64
}
