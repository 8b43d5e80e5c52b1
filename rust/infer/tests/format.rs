//! Format round trips and every kind of damaged file, through the public reader/writer API.
mod common;

use common::{config, encode, tokens, weights};
use nano_infer::format::{self, legacy, v2026, DType, LoraBase, LoraConfig, ModelConfig};
use nano_infer::{Engine, Error, GenerateOptions, Lora, Model};

fn err_text(r: Result<Model, Error>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn v2026_round_trip_all_dtypes_and_alignment() {
    for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
        let bytes = encode(dtype);
        let parsed = format::parse_model(&bytes).unwrap();
        assert_eq!(parsed.config, config());
        assert_eq!(parsed.base_hash.as_deref(), Some("00112233aabbccdd"));
        for t in &parsed.tensors {
            let format::Store::File { offset, .. } = t.store else {
                panic!("in place")
            };
            assert_eq!(offset % 64, 0, "{} not 64-byte aligned", t.name);
            let want = if t.shape.len() == 1 {
                DType::F32
            } else {
                dtype
            };
            assert_eq!(t.dtype, want, "{}", t.name);
        }
        let model = Model::from_bytes(bytes).unwrap();
        let mut e = Engine::new(model, Some(1)).unwrap();
        assert_eq!(e.logits(&[2, 5, 6]).unwrap().len(), 3 * 12);
    }
}

#[test]
fn f32_values_survive_exactly() {
    let bytes = encode(DType::F32);
    let model = Model::from_bytes(bytes).unwrap();
    let w = weights(&config());
    for (i, t) in model.tensors().iter().enumerate() {
        let src = &w.iter().find(|x| x.0 == t.name).unwrap().2;
        match model.mat(i).w {
            nano_infer::kernels::Weights::F32(v) => assert_eq!(v, &src[..]),
            _ => panic!("f32 expected"),
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = encode(DType::Q8_0);
    for cut in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        let e = err_text(Model::from_bytes(bytes[..cut].to_vec()));
        assert!(
            e.contains("truncated") || e.contains("too short"),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn any_flipped_byte_is_detected() {
    let bytes = encode(DType::F32);
    for pos in (64..bytes.len()).step_by(131) {
        let mut b = bytes.clone();
        b[pos] ^= 0x20;
        let e = err_text(Model::from_bytes(b));
        assert!(e.contains("checksum"), "byte {pos}: {e}");
    }
}

#[test]
fn wrong_magic_and_version() {
    let mut b = encode(DType::F32);
    b[0] ^= 1;
    assert!(err_text(Model::from_bytes(b)).contains("magic"));
    let mut b = encode(DType::F32);
    b[8..12].copy_from_slice(&2031i32.to_le_bytes());
    assert!(err_text(Model::from_bytes(b)).contains("version"));
    let mut b = encode(DType::F32);
    b[12..16].copy_from_slice(&9i32.to_le_bytes());
    assert!(err_text(Model::from_bytes(b)).contains("version"));
}

/// Rewrites the JSON header (same length) and fixes the checksum, so only the edit is wrong.
fn patch_header(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let len = u64::from_le_bytes(bytes[24..32].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[64..64 + len]).unwrap();
    assert!(header.contains(from), "{from} not in header");
    let mut b = bytes.to_vec();
    b[64..64 + len].copy_from_slice(header.replacen(from, to, 1).as_bytes());
    let sum = v2026::checksum(&b[64..]);
    b[48..56].copy_from_slice(&sum.to_le_bytes());
    b
}

#[test]
fn inconsistent_headers_are_refused() {
    let b = encode(DType::F32);
    let cases = [
        ("\"shape\":[32,32]", "\"shape\":[32,31]", "shape"),
        ("\"n_kv_head\":2", "\"n_kv_head\":3", "n_kv_head"),
        ("\"vocab_size\":12", "\"vocab_size\":13", "vocab_size"),
        ("\"dtype\":\"f32\"", "\"dtype\":\"f16\"", "bytes"),
        ("\"offset\":0,", "\"offset\":8,", "aligned"),
        (
            "\"name\":\"norm.weight\"",
            "\"name\":\"norm.weighx\"",
            "tensor",
        ),
        // a key the config does not have is refused, not dropped (tied_head has a default, so
        // only the unknown key is wrong)
        (
            "\"tied_head\":true",
            "\"tied_hexd\":true",
            "unknown field `tied_hexd`",
        ),
    ];
    for (from, to, want) in cases {
        let e = err_text(Model::from_bytes(patch_header(&b, from, to)));
        assert!(e.contains(want), "{from} -> {to}: {e}");
    }
}

#[test]
fn lora_files_round_trip_and_wrong_base_is_refused() {
    let c = config();
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec!["wq".into(), "wv".into(), "w2".into()],
    };
    let base = LoraBase::of(&c, Some("00112233aabbccdd".into()));
    let expected = format::expected_lora_tensors(&cfg, &base).unwrap();
    let data: Vec<Vec<f32>> = expected
        .iter()
        .map(|(_, s)| {
            (0..s.iter().product::<usize>())
                .map(|i| i as f32 * 1e-3)
                .collect()
        })
        .collect();
    let refs: Vec<_> = expected
        .iter()
        .zip(&data)
        .map(|((n, s), v)| v2026::TensorIn {
            name: n.clone(),
            shape: s.clone(),
            data: v,
        })
        .collect();
    let bytes = v2026::encode_lora(&cfg, &base, &refs).unwrap();
    let lora = Lora::from_bytes(bytes.clone()).unwrap();
    assert_eq!(lora.scale(), 2.0);
    let mut e = Engine::new(Model::from_bytes(encode(DType::F32)).unwrap(), Some(1)).unwrap();
    let plain = e.logits(&[2, 5, 6]).unwrap();
    e.load_lora(lora).unwrap();
    let adapted = e.logits(&[2, 5, 6]).unwrap();
    assert_ne!(plain, adapted);
    e.unload_lora();
    assert_eq!(plain, e.logits(&[2, 5, 6]).unwrap());

    let other = LoraBase {
        hash: Some("ffffffffffffffff".into()),
        ..base.clone()
    };
    let bytes = v2026::encode_lora(&cfg, &other, &refs).unwrap();
    let err = e
        .load_lora(Lora::from_bytes(bytes).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("another base"), "{err}");
    // a LoRA file is not a model, and a model is not a LoRA file
    assert!(Model::from_bytes(v2026::encode_lora(&cfg, &base, &refs).unwrap()).is_err());
    assert!(Lora::from_bytes(encode(DType::F32)).is_err());
}

#[test]
fn legacy_round_trip_gives_identical_logits() {
    let c = config();
    let w = weights(&c);
    let refs: Vec<_> = w
        .iter()
        .map(|(n, s, v)| v2026::TensorIn {
            name: n.clone(),
            shape: s.clone(),
            data: v,
        })
        .collect();
    let old = legacy::encode_model(&c, &tokens(c.vocab_size), &refs).unwrap();
    let mut a = Engine::new(Model::from_bytes(old.clone()).unwrap(), Some(1)).unwrap();
    let mut b = Engine::new(Model::from_bytes(encode(DType::F32)).unwrap(), Some(1)).unwrap();
    assert_eq!(
        a.logits(&[1, 2, 3, 4]).unwrap(),
        b.logits(&[1, 2, 3, 4]).unwrap()
    );
    for cut in [10, 255, 300, old.len() - 4] {
        assert!(Model::from_bytes(old[..cut].to_vec()).is_err());
    }
    let mut longer = old.clone();
    longer.extend([0u8; 4]);
    assert!(err_text(Model::from_bytes(longer)).contains("longer"));
    let refuse = ModelConfig {
        rope_theta: 500000.0,
        ..c.clone()
    };
    assert!(legacy::encode_model(&refuse, &tokens(c.vocab_size), &refs).is_err());
}

#[test]
fn bad_prompts_are_errors() {
    let mut e = Engine::new(Model::from_bytes(encode(DType::F32)).unwrap(), Some(1)).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 4,
        temperature: 0.0,
        ..Default::default()
    };
    let mut sink = |_: &str| true;
    assert!(e
        .generate("", &opts, &mut sink)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    let long = "a".repeat(17);
    assert!(e
        .generate(&long, &opts, &mut sink)
        .unwrap_err()
        .to_string()
        .contains("longer than the context"));
    assert!(e.logits(&[99]).is_err());
    let bad = GenerateOptions {
        temperature: -1.0,
        ..opts.clone()
    };
    assert!(e.generate("ab", &bad, &mut sink).is_err());
    // a prompt exactly filling the context generates nothing, without error
    let s = e.generate(&"a".repeat(16), &opts, &mut sink).unwrap();
    assert_eq!(s.generated_tokens, 0);
    let s = e.generate("abc", &opts, &mut sink).unwrap();
    assert!(s.generated_tokens <= 4);
}

/// Overwrites bytes at `at` and fixes the 2026.1 checksum, so only the values are wrong.
fn patch_data(bytes: &[u8], at: usize, value: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + value.len()].copy_from_slice(value);
    let sum = v2026::checksum(&b[64..]);
    b[48..56].copy_from_slice(&sum.to_le_bytes());
    b
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let nan = f32::NAN.to_le_bytes();
    let inf = f32::INFINITY.to_le_bytes();
    for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
        let bytes = encode(dtype);
        let parsed = format::parse_model(&bytes).unwrap();
        let t = parsed
            .tensors
            .iter()
            .find(|t| t.name == "layers.1.feed_forward.w2.weight")
            .unwrap();
        let format::Store::File { offset, nbytes } = t.store else {
            panic!("in place")
        };
        let n = t.numel();
        // the last value (f32 / f16) or the last group scale (q8_0 / q4_0)
        let (at, value, what): (usize, &[u8], &str) = match dtype {
            DType::F32 => (offset + nbytes - 4, &inf, "non-finite value"),
            DType::F16 => (offset + nbytes - 2, &[0x00, 0x7e], "non-finite value"),
            DType::Q8_0 | DType::Q4_0 => (offset + nbytes - 4, &nan, "non-finite"),
        };
        let e = err_text(Model::from_bytes(patch_data(&bytes, at, value)));
        assert!(
            e.contains("\"layers.1.feed_forward.w2.weight\"") && e.contains(what),
            "{dtype:?}: {e}"
        );
        if matches!(dtype, DType::Q8_0 | DType::Q4_0) {
            assert!(
                e.contains("scale") && e.contains(&format!("group {}", n / 32 - 1)),
                "{e}"
            );
        }
        // a norm (always f32) too
        let norm = parsed
            .tensors
            .iter()
            .find(|t| t.name == "norm.weight")
            .unwrap();
        let format::Store::File { offset, .. } = norm.store else {
            panic!("in place")
        };
        let e = err_text(Model::from_bytes(patch_data(&bytes, offset + 4, &nan)));
        assert!(
            e.contains("\"norm.weight\"") && e.contains("element 1"),
            "{e}"
        );
    }
    // 2024.10 files (no checksum): a NaN in the last parameter before the RoPE tables
    let c = config();
    let w = weights(&c);
    let refs: Vec<_> = w
        .iter()
        .map(|(n, s, v)| v2026::TensorIn {
            name: n.clone(),
            shape: s.clone(),
            data: v,
        })
        .collect();
    let mut old = legacy::encode_model(&c, &tokens(c.vocab_size), &refs).unwrap();
    let rope = 2 * c.block_size * c.head_dim() / 2 * 4;
    let at = old.len() - rope - 4;
    old[at..at + 4].copy_from_slice(&nan);
    let e = err_text(Model::from_bytes(old));
    assert!(
        e.contains("\"norm.weight\"") && e.contains("non-finite"),
        "{e}"
    );
    // and the writers refuse to write such weights
    let mut bad = w.clone();
    bad[3].2[0] = f32::NAN;
    let refs: Vec<_> = bad
        .iter()
        .map(|(n, s, v)| v2026::TensorIn {
            name: n.clone(),
            shape: s.clone(),
            data: v,
        })
        .collect();
    for r in [
        v2026::encode_model(&c, &tokens(c.vocab_size), None, &refs, DType::Q8_0),
        legacy::encode_model(&c, &tokens(c.vocab_size), &refs),
    ] {
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(&format!("{:?}", bad[3].0)) && e.contains("non-finite"),
            "{e}"
        );
    }
}
