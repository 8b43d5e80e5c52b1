//! The kernels' golden test, runnable in the browser / Node build: the same fixed inputs and FNV-1a
//! output hash as `golden_q8_0_and_q4_0_outputs` in rust/infer/src/kernels/tests.rs, so the wasm32 build
//! can be checked bit-exact against the native one (q8_0 / q4_0 use a fixed integer reduction order).
use nano_infer::kernels::{matmul, quantize_q4_0, quantize_q8_0, MatRef, Scratch, Weights};

/// The hashes the native kernel tests pin (rust/infer/src/kernels/tests.rs).
pub const GOLDEN_Q8_0: u64 = 0x3713_210a_b7f7_c23c;
pub const GOLDEN_Q4_0: u64 = 0x6c9c_4d72_5425_3610;

/// SplitMix64, as the kernel tests use it to draw their inputs.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1), exactly representable (24 random bits).
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// FNV-1a-64 over the little-endian bits of the outputs.
fn hash(v: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.iter().flat_map(|f| f.to_bits().to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// (q8_0 hash, q4_0 hash) of `X Wᵀ` for the golden inputs, on this build's fastest kernel path.
pub fn golden_hashes() -> (u64, u64) {
    const ROWS: usize = 96;
    const COLS: usize = 1408;
    const N: usize = 3;
    let mut rng = Rng(0x6e61_6e6f);
    let w = rng.vec(ROWS * COLS, 0.5);
    let x = rng.vec(N * COLS, 4.0);
    let (qs, q8_scales) = quantize_q8_0(&w, COLS);
    let (packed, q4_scales) = quantize_q4_0(&w, COLS);
    let mut scratch = Scratch::default();
    let run = |w: Weights, scratch: &mut Scratch| {
        let m = MatRef {
            rows: ROWS,
            cols: COLS,
            w,
        };
        let mut out = vec![0f32; N * ROWS];
        matmul(&mut out, &m, &x, N, scratch);
        hash(&out)
    };
    let h8 = run(
        Weights::Q8_0 {
            qs: &qs,
            scales: &q8_scales,
        },
        &mut scratch,
    );
    let h4 = run(
        Weights::Q4_0 {
            packed: &packed,
            scales: &q4_scales,
        },
        &mut scratch,
    );
    (h8, h4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_build_matches_the_kernel_golden_values() {
        assert_eq!(golden_hashes(), (GOLDEN_Q8_0, GOLDEN_Q4_0));
    }
}
