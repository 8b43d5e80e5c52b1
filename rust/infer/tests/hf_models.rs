//! Format 2026.2: models imported from Hugging Face (q/k/v biases, RoPE scaling, a BPE tokenizer
//! with a chat template carried in the file). Nano's own models keep being written as 2026.1.
mod common;

use common::{config, encode, encode_hf, hf_config, hf_tokenizer, refs, tokens, weights};
use nano_infer::format::{legacy, v2026, DType, ModelConfig};
use nano_infer::{Engine, GenerateOptions, Model};

fn minor(bytes: &[u8]) -> i32 {
    i32::from_le_bytes(bytes[12..16].try_into().unwrap())
}

#[test]
fn nano_models_stay_2026_1_and_imported_ones_are_2026_2() {
    assert_eq!(minor(&encode(DType::F32)), 1);
    let hf = encode_hf(&hf_config(), DType::F32);
    assert_eq!(minor(&hf), 2);
    // biases alone need 2026.2 too, with a Nano vocabulary
    let c = ModelConfig {
        qkv_bias: true,
        ..config()
    };
    let w = weights(&c);
    let b = v2026::encode_model(&c, &tokens(c.vocab_size), None, &refs(&w), DType::F32).unwrap();
    assert_eq!(minor(&b), 2);
    Model::from_bytes(b).unwrap();
}

#[test]
fn a_2026_1_file_cannot_claim_2026_2_features() {
    // the version words lie outside the checksum: a file relabelled 2026.1 is refused by name
    let mut b = encode_hf(&hf_config(), DType::F32);
    b[12..16].copy_from_slice(&1i32.to_le_bytes());
    let err = Model::from_bytes(b).unwrap_err().to_string();
    assert!(err.contains("need 2026.2"), "{err}");
    let mut b = encode_hf(&hf_config(), DType::F32);
    b[12..16].copy_from_slice(&3i32.to_le_bytes());
    let err = Model::from_bytes(b).unwrap_err().to_string();
    assert!(err.contains("unsupported version 2026.3"), "{err}");
}

#[test]
fn the_carried_tokenizer_encodes_decodes_and_renders_chat() {
    let model = Model::from_bytes(encode_hf(&hf_config(), DType::Q8_0)).unwrap();
    let tok = model.tokenizer();
    assert_eq!(tok.kind(), "hf");
    let ids = tok.prompt_ids("ab a");
    assert_eq!(ids[0], 1, "add_bos_token puts <s> first");
    assert_eq!(tok.decode(&ids).unwrap(), "ab a");
    assert_eq!(tok.stop_ids(), vec![2]);
    let chat = tok
        .render_chat(r#"[{"role": "user", "content": "ab"}]"#, true)
        .unwrap();
    assert_eq!(chat, "<s>[user] ab");
    assert_eq!(
        tok.chat_ids(r#"[{"role": "user", "content": "ab"}]"#, true)
            .unwrap()[0],
        1
    );
    let mut e = Engine::new(model, Some(1)).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 8,
        temperature: 0.0,
        instruct: true,
        ..Default::default()
    };
    let mut text = String::new();
    let s = e
        .generate("ab", &opts, &mut |p| {
            text.push_str(p);
            true
        })
        .unwrap();
    assert_eq!(s.prompt_tokens, tok_len(&e, "<s>[user] ab"));
    assert!(!text.contains("<s>") && !text.contains("</s>"));
}

fn tok_len(e: &Engine, text: &str) -> usize {
    e.model().tokenizer().encode(text, true).len()
}

#[test]
fn padded_embedding_rows_decode_to_nothing() {
    // the model's vocabulary may exceed the tokenizer's (checkpoints pad the embedding); ids of
    // the padding name no token and print nothing, as HF's decode skips them
    let c = ModelConfig {
        vocab_size: 20,
        ..hf_config()
    };
    let model = Model::from_bytes(encode_hf(&c, DType::F32)).unwrap();
    let tok = model.tokenizer();
    assert_eq!(tok.decode(&[4, 15, 5, 19]).unwrap(), "ab");
    let mut s = tok.stream_decoder();
    assert_eq!(s.push(4).unwrap(), "a");
    assert_eq!(s.push(17).unwrap(), "");
    assert_eq!(s.push(5).unwrap(), "b");
    // ids beyond the model's vocabulary are still errors
    assert!(Engine::new(model, Some(1)).unwrap().logits(&[20]).is_err());
}

#[test]
fn biases_and_rope_scaling_change_the_logits() {
    // the 2026.2 fields are used, not just stored: dropping either changes the result
    let run = |c: &ModelConfig| {
        let w = weights(c);
        let b = v2026::encode_hf_model(c, &hf_tokenizer(), &refs(&w), DType::F32).unwrap();
        Engine::new(Model::from_bytes(b).unwrap(), Some(1))
            .unwrap()
            .logits(&[1, 4, 5, 6, 7, 8, 9, 10, 11, 4, 5, 6])
            .unwrap()
    };
    let full = run(&hf_config());
    let unscaled = run(&ModelConfig {
        rope_scaling: None,
        ..hf_config()
    });
    assert_ne!(full, unscaled);
    // without biases the weight list differs, so compare against zeroed biases instead
    let c = hf_config();
    let mut w = weights(&c);
    for (name, _, v) in &mut w {
        if name.ends_with(".bias") {
            v.iter_mut().for_each(|x| *x = 0.0);
        }
    }
    let b = v2026::encode_hf_model(&c, &hf_tokenizer(), &refs(&w), DType::F32).unwrap();
    let zeroed = Engine::new(Model::from_bytes(b).unwrap(), Some(1))
        .unwrap()
        .logits(&[1, 4, 5, 6, 7, 8, 9, 10, 11, 4, 5, 6])
        .unwrap();
    assert_ne!(full, zeroed);
}

#[test]
fn bad_tokenizer_sections_are_refused_by_the_writer() {
    let c = hf_config();
    let w = weights(&c);
    let small = ModelConfig {
        vocab_size: 11,
        ..c.clone()
    };
    let ws = weights(&small);
    let err = v2026::encode_hf_model(&small, &hf_tokenizer(), &refs(&ws), DType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("vocab_size is 11"), "{err}");
    let mut t = hf_tokenizer();
    t.stop_ids = vec![99];
    let err = v2026::encode_hf_model(&c, &t, &refs(&w), DType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("stop id 99"), "{err}");
    let mut t = hf_tokenizer();
    t.chat_template = Some("{% for %}".into());
    assert!(v2026::encode_hf_model(&c, &t, &refs(&w), DType::F32).is_err());
    let mut t = hf_tokenizer();
    t.bos_token = Some("<nope>".into());
    let err = v2026::encode_hf_model(&c, &t, &refs(&w), DType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bos_token \"<nope>\""), "{err}");
    let mut t = hf_tokenizer();
    t.json = "{".into();
    assert!(v2026::encode_hf_model(&c, &t, &refs(&w), DType::F32).is_err());
    // the 2024.10 layout has no place for biases
    let err = legacy::encode_model(&c, &tokens(c.vocab_size), &refs(&w))
        .unwrap_err()
        .to_string();
    assert!(err.contains("q/k/v biases"), "{err}");
}

/// The batched decode of the server applies the biases and the RoPE scaling as the one-sequence
/// path does: a decode step gives the logits `Engine::logits` gives for the same ids.
#[test]
fn batched_decode_of_an_imported_model_equals_its_logits() {
    let c = hf_config();
    let mut e = Engine::new(
        Model::from_bytes(encode_hf(&c, DType::F32)).unwrap(),
        Some(1),
    )
    .unwrap();
    let mut ids: Vec<u32> = vec![1, 4, 5, 8];
    let mut seq = e.new_sequence().unwrap();
    let mut got = e.prefill(&mut seq, &ids).unwrap();
    for t in [9, 10, 11, 4, 6, 7] {
        let all = e.logits(&ids).unwrap();
        let want = &all[all.len() - c.vocab_size..];
        let err = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // the float kernels may order sums differently for one row than for several
        assert!(err <= 1e-5, "after {} tokens: {err}", ids.len());
        ids.push(t);
        got = e.decode_batch(&mut [&mut seq], &[t]).unwrap();
    }
}
