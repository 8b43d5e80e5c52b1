//! Elementwise math of the forward pass: e^x written with plain arithmetic, so the compiler
//! vectorizes the loops that use it (a libm call per value stays scalar), and so every build of the
//! engine (x86-64, aarch64, WASM) computes the same bits.

/// Below this e^x is 0 (and 2^k would leave the normal range); above `EXP_MAX` it is +inf.
const EXP_MIN: f32 = -87.3;
const EXP_MAX: f32 = 88.7;

/// e^x within 2 ulp (Cody–Waite reduction x = k ln2 + r, |r| ≤ ln2/2, then a degree-6 polynomial for
/// e^r, Cephes' `expf` coefficients); 0 below -87.3, +inf above 88.7, NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // k = x / ln 2 rounded to nearest with the 1.5·2^23 shift: exact, and it vectorizes without
    // a rounding instruction. ln 2 = C1 + C2 with C1 short enough that k·C1 is exact.
    const SHIFT: f32 = 12_582_912.0;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let xc = x.clamp(EXP_MIN, EXP_MAX);
    let shifted = xc * std::f32::consts::LOG2_E + SHIFT;
    let k = shifted - SHIFT;
    let r = (xc - k * C1) - k * C2;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let er = (r * r) * p + r + 1.0;
    // k as an integer from the shifted value's low bits (a float-to-int conversion would not
    // vectorize: Rust's `as` saturates); 2^k in two halves, as 2^k alone overflows for k = 128.
    let k = shifted.to_bits() as i32 - SHIFT.to_bits() as i32;
    let half = k / 2;
    let scale = |e: i32| f32::from_bits(((e + 127) << 23) as u32);
    let v = er * scale(half) * scale(k - half);
    if x < EXP_MIN {
        0.0
    } else if x > EXP_MAX {
        f32::INFINITY
    } else {
        v
    }
}

/// `h[i] = silu(h[i]) · g[i]`, the SwiGLU gate (silu(a) = a / (1 + e^-a)), on the fastest path.
pub fn silu_gate(h: &mut [f32], g: &[f32]) {
    super::Kernels::best().silu_gate(h, g)
}

/// The gate's definition and plain-source path. Rust never fuses multiplies and adds, so the
/// paths that compile this source for wider vectors give the same bits.
#[inline(always)]
pub(crate) fn silu_gate_plain(h: &mut [f32], g: &[f32]) {
    for (a, &b) in h.iter_mut().zip(g) {
        *a = *a / (1.0 + exp(-*a)) * b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64's exp over the whole range, on a dense grid and at the edges.
    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.5 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = (want as f32).abs() as f64 * f32::EPSILON as f64;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(88.7).is_finite() && exp(88.7) > 3.0e38);
    }

    #[test]
    fn silu_gate_matches_the_definition() {
        let h: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.037).collect();
        let g: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 101) as f32 * 0.01 - 0.5)
            .collect();
        let mut got = h.clone();
        silu_gate(&mut got, &g);
        for ((&a, &b), &o) in h.iter().zip(&g).zip(&got) {
            let want = a as f64 / (1.0 + (-a as f64).exp()) * b as f64;
            assert!(
                (o as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{a} {b}: {o} vs {want}"
            );
        }
    }
}
