//! Deterministic inputs and the golden q8_0 / q4_0 check, shared by the unit tests and by harnesses that
//! run the check where `cargo test` cannot (a wasm32 build under Node). Not part of the engine's API.

use super::*;

/// FNV-1a-64 of the q8_0 / q4_0 golden outputs (see [`golden_hashes`]).
pub const GOLDEN_Q8: u64 = 0x3713_210a_b7f7_c23c;
pub const GOLDEN_Q4: u64 = 0x6c9c_4d72_5425_3610;

/// SplitMix64: a fixed, portable pseudo-random source (same values on every machine).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1), exactly representable (24 random bits).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// Owned weights of one matrix in every dtype.
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub f32: Vec<f32>,
    pub f16: Vec<u16>,
    pub q8: (Vec<i8>, Vec<f32>),
    pub q4: (Vec<u8>, Vec<f32>),
}

impl Mat {
    pub fn random(rng: &mut Rng, rows: usize, cols: usize) -> Mat {
        let f32 = rng.vec(rows * cols, 0.5);
        Mat {
            rows,
            cols,
            f16: f32.iter().map(|&v| f32_to_f16(v)).collect(),
            q8: quantize_q8_0(&f32, cols),
            q4: quantize_q4_0(&f32, cols),
            f32,
        }
    }
    pub fn refs(&self) -> [MatRef<'_>; 4] {
        let m = |w| MatRef {
            rows: self.rows,
            cols: self.cols,
            w,
        };
        [
            m(Weights::F32(&self.f32)),
            m(Weights::F16(&self.f16)),
            m(Weights::Q8_0 {
                qs: &self.q8.0,
                scales: &self.q8.1,
            }),
            m(Weights::Q4_0 {
                packed: &self.q4.0,
                scales: &self.q4.1,
            }),
        ]
    }
}

/// FNV-1a-64 over the output bits.
pub fn hash(v: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.iter().flat_map(|f| f.to_bits().to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// (path name, q8_0 hash, q4_0 hash) of a fixed 96x1408 matrix times 3 fixed inputs, for every path
/// this CPU can run; every entry must equal ([`GOLDEN_Q8`], [`GOLDEN_Q4`]).
pub fn golden_hashes() -> Vec<(&'static str, u64, u64)> {
    let mut rng = Rng(0x6e61_6e6f);
    let mat = Mat::random(&mut rng, 96, 1408);
    let n = 3;
    let x = rng.vec(n * 1408, 4.0);
    let mut scratch = Scratch::default();
    let [_, _, q8, q4] = mat.refs();
    Kernels::available()
        .into_iter()
        .map(|k| {
            let mut out8 = vec![0f32; n * 96];
            k.matmul(&mut out8, &q8, &x, n, &mut scratch);
            let mut out4 = vec![0f32; n * 96];
            k.matmul(&mut out4, &q4, &x, n, &mut scratch);
            (k.name(), hash(&out8), hash(&out4))
        })
        .collect()
}
