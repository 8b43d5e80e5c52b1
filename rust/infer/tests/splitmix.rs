//! SplitMix64 is written out in three crates (the sampler's, the kernels' test inputs, the shuffler's
//! seed derivation; `nano-shuffle` and `nano-tokenizer` depend on nothing of ours, so they cannot share
//! one). Each copy must give the sampler's stream, which `nano.sampling.SplitMix64` is tested against
//! from Python (`tests/test_contracts.py`); a drift in any copy fails here.
use nano_infer::kernels::selftest;
use nano_infer::sampler::SplitMix64;

const SEEDS: [u64; 5] = [0, 1, 42, 0x9E37_79B9_7F4A_7C15, u64::MAX];

#[test]
fn every_splitmix64_gives_the_samplers_stream() {
    for seed in SEEDS {
        let mut sampler = SplitMix64::new(seed);
        let mut kernels = selftest::Rng(seed);
        let mut shuffle_state = seed;
        for _ in 0..256 {
            let want = sampler.next_u64();
            assert_eq!(
                kernels.next_u64(),
                want,
                "kernels::selftest::Rng, seed {seed}"
            );
            assert_eq!(
                nano_shuffle::rng::splitmix64(&mut shuffle_state),
                want,
                "nano_shuffle::rng::splitmix64, seed {seed}"
            );
        }
    }
}
