//! Small models for the integration tests: a fixed config, a vocabulary and deterministic weights.
#![allow(dead_code)] // each test file uses its own subset

use nano_infer::format::{v2026, DType, HfTokenizer, ModelConfig, RopeScaling, TokenList};

pub fn config() -> ModelConfig {
    ModelConfig {
        block_size: 16,
        vocab_size: 12,
        n_layer: 2,
        n_embd: 32,
        n_head: 4,
        n_kv_head: 2,
        n_hidden: 64,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        use_rope: true,
        is_causal: true,
        tied_head: true,
        qkv_bias: false,
        rope_scaling: None,
    }
}

pub fn tokens(n: usize) -> TokenList {
    let mut t: Vec<String> = ["<|padding|>", "<|unknown|>", "<|bos|>", "<|eos|>"]
        .map(String::from)
        .to_vec();
    let mut special = vec![true; 4];
    for i in 0..n - 4 {
        t.push(char::from(b'a' + i as u8).to_string());
        special.push(false);
    }
    TokenList { tokens: t, special }
}

/// Deterministic pseudo-random weights (norms near 1).
pub fn weights(c: &ModelConfig) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut state = 12345u64;
    c.expected_tensors()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let v = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    if shape.len() == 1 {
                        1.0 + 0.1 * u
                    } else {
                        0.2 * u
                    }
                })
                .collect();
            (name, shape, v)
        })
        .collect()
}

pub fn encode(dtype: DType) -> Vec<u8> {
    encode_with(&config(), dtype)
}

/// `TensorIn` views of owned tensors.
pub fn refs(w: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<v2026::TensorIn<'_>> {
    w.iter()
        .map(|(n, s, v)| v2026::TensorIn {
            name: n.clone(),
            shape: s.clone(),
            data: v,
        })
        .collect()
}

/// A Nano 2026.1 file of a model of shape `c` with [`weights`].
pub fn encode_with(c: &ModelConfig, dtype: DType) -> Vec<u8> {
    let w = weights(c);
    v2026::encode_model(
        c,
        &tokens(c.vocab_size),
        Some("00112233aabbccdd"),
        &refs(&w),
        dtype,
    )
    .unwrap()
}

/// A 2024.10 fp32 file of a model of shape `c` with [`weights`].
pub fn encode_legacy(c: &ModelConfig) -> Vec<u8> {
    let w = weights(c);
    nano_infer::format::legacy::encode_model(c, &tokens(c.vocab_size), &refs(&w)).unwrap()
}

/// A LoRA plug-in (wq, wk, wv, wo; rank 2, alpha 4) for a base of shape `c`, in either format.
pub fn encode_lora(c: &ModelConfig, legacy: bool) -> Vec<u8> {
    use nano_infer::format::{expected_lora_tensors, LoraBase, LoraConfig};
    let cfg = LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: ["wq", "wk", "wv", "wo"].map(String::from).to_vec(),
    };
    let base = LoraBase::of(c, None);
    let w: Vec<(String, Vec<usize>, Vec<f32>)> = expected_lora_tensors(&cfg, &base)
        .unwrap()
        .into_iter()
        .map(|(n, s)| {
            let v = (0..s.iter().product::<usize>())
                .map(|i| (i % 7) as f32 * 1e-2)
                .collect();
            (n, s, v)
        })
        .collect();
    if legacy {
        nano_infer::format::legacy::encode_lora(&cfg, &base, &refs(&w)).unwrap()
    } else {
        v2026::encode_lora(&cfg, &base, &refs(&w)).unwrap()
    }
}

/// A SentencePiece-style Hugging Face tokenizer (TinyLlama's `tokenizer.json` form, no byte
/// fallback) of 12 tokens, with a chat template, BOS added to prompts and `</s>` ending generation.
pub fn hf_tokenizer() -> HfTokenizer {
    let json = serde_json::json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
        ]},
        "pre_tokenizer": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "fuse_unk": true,
                  "byte_fallback": false,
                  "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "a": 4, "b": 5, "c": 6,
                            "d": 7, "▁a": 8, "ab": 9, "e": 10, "f": 11},
                  "merges": [["▁", "a"], ["a", "b"]]}
    });
    HfTokenizer {
        json: json.to_string(),
        bos_token: Some("<s>".into()),
        eos_token: Some("</s>".into()),
        pad_token: None,
        unk_token: Some("<unk>".into()),
        add_bos_token: true,
        chat_template: Some(
            "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
                .into(),
        ),
        stop_ids: vec![2],
    }
}

/// [`config`] with q/k/v biases and Llama 3 RoPE scaling (a 2026.2 model).
pub fn hf_config() -> ModelConfig {
    ModelConfig {
        qkv_bias: true,
        rope_scaling: Some(RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8,
        }),
        ..config()
    }
}

/// A Nano 2026.2 file of a model of shape `c` with [`weights`] and [`hf_tokenizer`].
pub fn encode_hf(c: &ModelConfig, dtype: DType) -> Vec<u8> {
    let w = weights(c);
    v2026::encode_hf_model(c, &hf_tokenizer(), &refs(&w), dtype).unwrap()
}
