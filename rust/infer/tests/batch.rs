//! Batched decoding (`Engine::decode_batch`): each sequence's logits are those it gets alone,
//! whatever runs beside it, and those of the one-sequence path (`Engine::logits`).
mod common;

use common::{config, encode_lora, encode_with};
use nano_infer::format::{DType, ModelConfig};
use nano_infer::{Engine, Lora, Model, Sequence};

fn cfg() -> ModelConfig {
    ModelConfig {
        block_size: 40,
        vocab_size: 12,
        ..config()
    }
}

fn engine(dtype: DType, threads: usize, lora: bool) -> Engine {
    let c = cfg();
    let mut e = Engine::new(
        Model::from_bytes(encode_with(&c, dtype)).unwrap(),
        Some(threads),
    )
    .unwrap();
    if lora {
        e.load_lora(Lora::from_bytes(encode_lora(&c, false)).unwrap())
            .unwrap();
    }
    e
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// Prompts of different lengths, so the sequences of one step sit at different positions.
fn prompts() -> Vec<Vec<u32>> {
    (0..5)
        .map(|s| {
            (0..3 + 4 * s)
                .map(|i| 4 + ((i * 7 + s) % 8) as u32)
                .collect()
        })
        .collect()
}

/// A fixed next token for step `k` of sequence `s` (greedy choice would hide differences that do
/// not change the argmax).
fn next(s: usize, k: usize) -> u32 {
    4 + ((s * 3 + k * 5) % 8) as u32
}

/// Logits of `steps` decode steps of one sequence alone (one-sequence batches).
fn alone(e: &mut Engine, prompt: &[u32], s: usize, steps: usize) -> Vec<Vec<f32>> {
    let mut seq = e.new_sequence().unwrap();
    let mut out = vec![e.prefill(&mut seq, prompt).unwrap()];
    for k in 0..steps {
        out.push(e.decode_batch(&mut [&mut seq], &[next(s, k)]).unwrap());
    }
    out
}

/// All sequences together, joining one per step (the first two at once) and each leaving after
/// its own number of steps, through reused sequences (caches left from an earlier, longer run).
fn together(e: &mut Engine, steps: &[usize]) -> Vec<Vec<Vec<f32>>> {
    let prompts = prompts();
    let mut seqs: Vec<Sequence> = (0..prompts.len())
        .map(|_| e.new_sequence().unwrap())
        .collect();
    // Leave stale keys and values of another run in every cache.
    for seq in &mut seqs {
        let long: Vec<u32> = (0..30).map(|i| 4 + (i % 8)).collect();
        e.prefill(seq, &long).unwrap();
    }
    let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); prompts.len()];
    let mut done = vec![0usize; prompts.len()];
    let mut joined = 0;
    for round in 0.. {
        while joined < prompts.len() && joined <= round + 1 {
            out[joined].push(e.prefill(&mut seqs[joined], &prompts[joined]).unwrap());
            joined += 1;
        }
        let live: Vec<usize> = (0..joined).filter(|&s| done[s] < steps[s]).collect();
        if live.is_empty() && joined == prompts.len() {
            break;
        }
        let tokens: Vec<u32> = live.iter().map(|&s| next(s, done[s])).collect();
        let mut refs: Vec<&mut Sequence> = seqs
            .iter_mut()
            .enumerate()
            .filter(|(s, _)| live.contains(s))
            .map(|(_, q)| q)
            .collect();
        let logits = e.decode_batch(&mut refs, &tokens).unwrap();
        let vocab = cfg().vocab_size;
        for (row, &s) in logits.chunks_exact(vocab).zip(&live) {
            out[s].push(row.to_vec());
            done[s] += 1;
        }
    }
    out
}

#[test]
fn batched_decode_equals_each_sequence_alone() {
    let steps = [6, 2, 9, 4, 1];
    for dtype in [DType::Q8_0, DType::Q4_0, DType::F32, DType::F16] {
        for (threads, lora) in [(1, false), (2, false), (2, true)] {
            let mut e = engine(dtype, threads, lora);
            let got = together(&mut e, &steps);
            for (s, prompt) in prompts().iter().enumerate() {
                let want = alone(&mut e, prompt, s, steps[s]);
                assert_eq!(got[s].len(), want.len());
                for (k, (g, w)) in got[s].iter().zip(&want).enumerate() {
                    assert!(
                        bits(g) == bits(w),
                        "{dtype:?} threads {threads} lora {lora}: sequence {s} step {k}"
                    );
                }
            }
        }
    }
}

/// A one-sequence step gives the bits of the engine's own path: the last row of
/// `Engine::logits` over the same tokens (every input row's matrix products and attention are
/// independent of the others there too, below the float kernels' token-lane threshold).
#[test]
fn one_sequence_step_equals_engine_logits() {
    let vocab = cfg().vocab_size;
    for dtype in [DType::Q8_0, DType::Q4_0, DType::F32] {
        let mut e = engine(dtype, 2, false);
        let mut ids: Vec<u32> = vec![5, 9, 4, 7];
        let mut seq = e.new_sequence().unwrap();
        let mut got = e.prefill(&mut seq, &ids).unwrap();
        for k in 0..8 {
            let all = e.logits(&ids).unwrap();
            assert!(
                bits(&got) == bits(&all[all.len() - vocab..]),
                "{dtype:?} after {} tokens",
                ids.len()
            );
            let t = next(0, k);
            ids.push(t);
            got = e.decode_batch(&mut [&mut seq], &[t]).unwrap();
        }
    }
}

#[test]
fn bad_batches_are_errors() {
    let mut e = engine(DType::F32, 1, false);
    let mut a = e.new_sequence().unwrap();
    assert!(
        e.decode_batch(&mut [&mut a], &[4]).is_err(),
        "not prefilled"
    );
    e.prefill(&mut a, &[4, 5]).unwrap();
    assert!(
        e.decode_batch(&mut [&mut a], &[4, 5]).is_err(),
        "counts differ"
    );
    assert!(
        e.decode_batch(&mut [&mut a], &[99]).is_err(),
        "outside the vocabulary"
    );
    assert!(e.prefill(&mut a, &[]).is_err());
    let full: Vec<u32> = vec![4; cfg().block_size];
    e.prefill(&mut a, &full).unwrap();
    assert!(e.decode_batch(&mut [&mut a], &[4]).is_err(), "context full");
    assert_eq!(a.len(), cfg().block_size);
}

/// More sequences than one pass takes (float weights' lane threshold): still each one's own bits.
#[test]
fn large_batches_equal_each_sequence_alone() {
    let vocab = cfg().vocab_size;
    for dtype in [DType::F32, DType::Q8_0] {
        let mut e = engine(dtype, 2, true);
        let prompts: Vec<Vec<u32>> = (0..20)
            .map(|s| {
                (0..1 + s % 7)
                    .map(|i| 4 + ((i * 5 + s) % 8) as u32)
                    .collect()
            })
            .collect();
        let mut seqs: Vec<Sequence> = prompts.iter().map(|_| e.new_sequence().unwrap()).collect();
        for (seq, p) in seqs.iter_mut().zip(&prompts) {
            e.prefill(seq, p).unwrap();
        }
        let tokens: Vec<u32> = (0..20).map(|s| next(s, 0)).collect();
        let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
        let got = e.decode_batch(&mut refs, &tokens).unwrap();
        for (s, p) in prompts.iter().enumerate() {
            let want = alone(&mut e, p, s, 1);
            assert!(
                bits(&got[s * vocab..(s + 1) * vocab]) == bits(&want[1]),
                "{dtype:?} sequence {s}"
            );
        }
    }
}
