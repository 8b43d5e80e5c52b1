//! Kernel tests: conversions against exact/hardware references, quantization error bounds, every
//! available ISA path against the scalar reference, and one golden hash of q8_0 / q4_0 outputs.

use super::selftest::{golden_hashes, Mat, Rng, GOLDEN_Q4, GOLDEN_Q8};
use super::*;

fn dequantized(m: &MatRef) -> Vec<f32> {
    let mut all = vec![0f32; m.rows * m.cols];
    for (r, row) in all.chunks_exact_mut(m.cols).enumerate() {
        dequantize_row(m, r, row);
    }
    all
}

fn is_quantized(m: &MatRef) -> bool {
    m.w.is_quantized()
}

#[test]
fn f16_round_trips_every_half_value() {
    for h in 0..=u16::MAX {
        let v = f16_to_f32(h);
        if v.is_nan() {
            assert!(f32_to_f16(v) & 0x7c00 == 0x7c00 && f32_to_f16(v) & 0x3ff != 0);
        } else {
            assert_eq!(f32_to_f16(v), h, "half {h:#06x} -> {v}");
        }
    }
}

#[test]
fn f16_rounds_to_nearest_even() {
    assert_eq!(f32_to_f16(1.0), 0x3c00);
    assert_eq!(f32_to_f16(-2.0), 0xc000);
    assert_eq!(f32_to_f16(65504.0), 0x7bff);
    assert_eq!(f32_to_f16(65520.0), 0x7c00); // halfway to the next binade: rounds up to inf
    assert_eq!(f32_to_f16(1e9), 0x7c00);
    assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xfc00);
    // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1.0).
    assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00);
    assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02);
    assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001); // smallest subnormal
    assert_eq!(f32_to_f16(2.980_232_2e-8), 0x0000); // half of it: tie to even (zero)
    assert_eq!(f32_to_f16(2.99e-8), 0x0001);
}

/// The CPU's own conversion instruction (F16C) as an independent reference on random bit patterns.
#[cfg(target_arch = "x86_64")]
#[test]
fn f16_matches_hardware_conversion() {
    if !std::is_x86_feature_detected!("f16c") {
        return;
    }
    #[target_feature(enable = "f16c")]
    unsafe fn hw(x: f32) -> u16 {
        use std::arch::x86_64::*;
        _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set1_ps(x))) as u16
    }
    let mut rng = Rng(7);
    for _ in 0..200_000 {
        // Exponents concentrated around the half range, including subnormals and overflow.
        let bits =
            (rng.next_u64() as u32 & 0x807f_ffff) | ((90 + (rng.next_u64() % 60) as u32) << 23);
        let x = f32::from_bits(bits);
        assert_eq!(f32_to_f16(x), unsafe { hw(x) }, "{x:e}");
    }
}

/// Every path's f16 widening (hardware conversion on x86-64) gives `f16_to_f32`'s bits for every
/// half value that is not a NaN, and a NaN for every NaN; the length leaves a tail.
#[test]
fn f16_slice_widening_is_exact() {
    let halves: Vec<u16> = (0..=u16::MAX).chain(0..7).collect();
    for k in Kernels::available() {
        let mut wide = vec![0f32; halves.len()];
        (k.widen_f16)(&halves, &mut wide);
        for (&h, &w) in halves.iter().zip(&wide) {
            let want = f16_to_f32(h);
            if want.is_nan() {
                assert!(w.is_nan(), "{} {h:#06x}", k.name());
            } else {
                assert_eq!(w.to_bits(), want.to_bits(), "{} {h:#06x}", k.name());
            }
        }
    }
}

#[test]
fn q8_0_round_trip_within_half_a_step() {
    let mut rng = Rng(1);
    let mut w = rng.vec(64 * 96, 3.0);
    w[5] = 0.0;
    w[64..96].fill(0.0); // an all-zero group
    let (qs, scales) = quantize_q8_0(&w, 96);
    let m = MatRef {
        rows: 64,
        cols: 96,
        w: Weights::Q8_0 {
            qs: &qs,
            scales: &scales,
        },
    };
    let back = dequantized(&m);
    for (g, (orig, deq)) in w.chunks(QK).zip(back.chunks(QK)).enumerate() {
        let amax = orig.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert_eq!(scales[g], amax / 127.0);
        for (&o, &d) in orig.iter().zip(deq) {
            assert!((o - d).abs() <= scales[g] * 0.5 * 1.0001, "{o} vs {d}");
        }
    }
    assert!(back[64..96].iter().all(|&v| v == 0.0));
}

#[test]
fn q4_0_round_trip_within_one_step_and_max_exact() {
    let mut rng = Rng(2);
    let w = rng.vec(16 * 64, 2.0);
    let (packed, scales) = quantize_q4_0(&w, 64);
    let m = MatRef {
        rows: 16,
        cols: 64,
        w: Weights::Q4_0 {
            packed: &packed,
            scales: &scales,
        },
    };
    let back = dequantized(&m);
    for (g, (orig, deq)) in w.chunks(QK).zip(back.chunks(QK)).enumerate() {
        let max = orig
            .iter()
            .fold(0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
        assert_eq!(scales[g], max / -8.0);
        let d = scales[g].abs();
        for (&o, &q) in orig.iter().zip(deq) {
            if o == max {
                assert_eq!(q, o, "the largest magnitude is exact (q = -8)");
            }
            // Only values of the opposite sign near -max clamp (q = +8 -> 7): one step at most.
            assert!((o - q).abs() <= d * 1.0001, "{o} vs {q}");
        }
    }
}

#[test]
fn q4_0_nibble_layout() {
    let mut w = [0f32; 32];
    w[0] = -8.0; // max magnitude: scale = 1, q = -8 -> stored 0
    w[16] = 7.0; // q = 7 -> stored 15
    w[1] = 3.0; // q = 3 -> stored 11
    let (packed, scales) = quantize_q4_0(&w, 32);
    assert_eq!(scales, vec![1.0]);
    assert_eq!(packed[0], 0xf0);
    assert_eq!(packed[1], 0x8b);
    assert_eq!(packed[2], 0x88);
}

/// matvec against an f64 reference: the exact q8_0 arithmetic for quantized weights, plain dot for f32 / f16.
#[test]
fn matvec_matches_f64_reference() {
    let mut rng = Rng(3);
    let mat = Mat::random(&mut rng, 37, 160);
    let x = rng.vec(160, 2.0);
    let (qx, sx) = quantize_q8_0(&x, 160);
    let xq: Vec<f32> = qx
        .iter()
        .enumerate()
        .map(|(i, &q)| q as f32 * sx[i / QK])
        .collect();
    let mut scratch = Scratch::default();
    for m in mat.refs() {
        let w = dequantized(&m);
        let xs = if is_quantized(&m) { &xq } else { &x };
        let mut out = vec![0f32; m.rows];
        matvec(&mut out, &m, &x, &mut scratch);
        for (r, &got) in out.iter().enumerate() {
            let row = &w[r * m.cols..(r + 1) * m.cols];
            let exact: f64 = row.iter().zip(xs).map(|(&a, &b)| a as f64 * b as f64).sum();
            let mag: f64 = row
                .iter()
                .zip(xs)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            assert!(
                (got as f64 - exact).abs() <= 1e-5 * mag + 1e-30,
                "{} row {r}: {got} vs {exact}",
                kind(&m.w)
            );
        }
        // Against the unquantized product: within the worst case of the quantization steps
        // (half a step for q8_0, a whole step for q4_0 whose +8 clamps to 7; activations half a step).
        if is_quantized(&m) {
            let (w_step, wsc): (f32, &[f32]) = match m.w {
                Weights::Q8_0 { scales, .. } => (0.5, scales),
                Weights::Q4_0 { scales, .. } => (1.0, scales),
                _ => unreachable!(),
            };
            for (r, &got) in out.iter().enumerate() {
                let (mut exact, mut bound) = (0f64, 1e-4f64);
                for c in 0..160 {
                    let (wv, xv) = (mat.f32[r * 160 + c] as f64, x[c] as f64);
                    let dw = (w_step * wsc[(r * 160 + c) / QK].abs()) as f64;
                    let dx = (0.5 * sx[c / QK]) as f64;
                    exact += wv * xv;
                    bound += dw * xv.abs() + wv.abs() * dx + dw * dx;
                }
                assert!(
                    (got as f64 - exact).abs() <= bound,
                    "row {r}: {got} vs {exact} (bound {bound})"
                );
            }
        }
    }
}

/// Float rows of odd lengths (16-wide rests and scalar tails): a matmul of 6 inputs equals 6 matvecs
/// bit for bit.
#[test]
fn float_matmul_with_odd_lengths_equals_matvecs() {
    let mut rng = Rng(14);
    let mut scratch = Scratch::default();
    for cols in [23, 200, 272] {
        let w = rng.vec(40 * cols, 1.0);
        let h: Vec<u16> = w.iter().map(|&v| f32_to_f16(v)).collect();
        let x = rng.vec(6 * cols, 1.0);
        for k in Kernels::available() {
            for wts in [Weights::F32(&w), Weights::F16(&h)] {
                let m = MatRef {
                    rows: 40,
                    cols,
                    w: wts,
                };
                let mut batched = vec![0f32; 6 * 40];
                k.matmul(&mut batched, &m, &x, 6, &mut scratch);
                for t in 0..6 {
                    let mut single = vec![0f32; 40];
                    k.matvec(&mut single, &m, &x[t * cols..(t + 1) * cols], &mut scratch);
                    assert!(
                        bits(&batched[t * 40..(t + 1) * 40]) == bits(&single),
                        "{} cols {cols} token {t}",
                        k.name()
                    );
                }
            }
        }
    }
}

/// Prefill of float rows on a path with `token_lanes` gives, for every row and input, the
/// fused multiply-add chain of `tokens_f32_reference` bit for bit (f16 rows widened first), on
/// shapes that leave every tile tail: rows not a multiple of 6, the last lane vector partly
/// filled, columns past one pass of `TOKEN_COLUMNS` and not a multiple of 16.
#[test]
fn token_lane_prefill_is_the_fma_chain() {
    let mut rng = Rng(21);
    let mut scratch = Scratch::default();
    let paths: Vec<Kernels> = Kernels::available()
        .into_iter()
        .filter(|k| k.token_lanes.is_some())
        .collect();
    for (rows, cols, n) in [
        (13, 23, 16),
        (40, 300, 17),
        (7, 129, 64),
        (64, 512, 70),
        (6, 1408, 33),
    ] {
        let w = rng.vec(rows * cols, 1.0);
        let h: Vec<u16> = w.iter().map(|&v| f32_to_f16(v)).collect();
        let widened: Vec<f32> = h.iter().map(|&v| f16_to_f32(v)).collect();
        let x = rng.vec(n * cols, 1.0);
        let mut want_xt = vec![f32::NAN; n.div_ceil(16) * 16 * cols];
        transpose_inputs(&x, n, cols, &mut want_xt);
        for k in &paths {
            let mut xt = vec![f32::NAN; want_xt.len()];
            (k.token_lanes.expect("filtered").transpose)(&x, n, cols, &mut xt);
            assert!(
                bits(&xt) == bits(&want_xt),
                "{} transpose {n}x{cols}",
                k.name()
            );
            for (wts, plain) in [(Weights::F32(&w), &w), (Weights::F16(&h), &widened)] {
                let m = MatRef { rows, cols, w: wts };
                let mut got = vec![0f32; n * rows];
                k.matmul(&mut got, &m, &x, n, &mut scratch);
                for t in 0..n {
                    let xt = &x[t * cols..(t + 1) * cols];
                    let want: Vec<f32> = plain
                        .chunks_exact(cols)
                        .map(|row| tokens_f32_reference(row, xt))
                        .collect();
                    assert!(
                        bits(&got[t * rows..(t + 1) * rows]) == bits(&want),
                        "{} {} {rows}x{cols} n {n} input {t}",
                        k.name(),
                        kind(&m.w)
                    );
                }
            }
        }
    }
}

/// matmul of n inputs == n separate matvecs, bit for bit, on every path and dtype, for fewer than
/// `TOKEN_LANES_MIN` inputs (from there float rows take the lane kernels' own order:
/// `token_lane_prefill_is_the_fma_chain`).
#[test]
fn matmul_equals_n_matvecs() {
    // (rows, cols, inputs): rows and inputs leave every tail of the 4×4 float tile (4×1, 4×3, 4×2
    // and single rows); 224 columns end on a 16-wide step after the 64-wide loop.
    for (rows, cols, n) in [(300, 256, 5), (37, 224, 8), (22, 224, 7), (9, 96, 6)] {
        assert!(n < TOKEN_LANES_MIN, "the block kernels' range");
        let mut rng = Rng(4);
        let mat = Mat::random(&mut rng, rows, cols);
        let x = rng.vec(n * cols, 1.0);
        let mut scratch = Scratch::default();
        for k in Kernels::available() {
            for m in mat.refs() {
                let mut batched = vec![0f32; n * m.rows];
                k.matmul(&mut batched, &m, &x, n, &mut scratch);
                for t in 0..n {
                    let mut single = vec![0f32; m.rows];
                    k.matvec(&mut single, &m, &x[t * cols..(t + 1) * cols], &mut scratch);
                    let got = &batched[t * m.rows..(t + 1) * m.rows];
                    assert!(
                        bits(got) == bits(&single),
                        "{} {} token {t}",
                        k.name(),
                        kind(&m.w)
                    );
                }
            }
        }
    }
}

/// q8_0 rows times several inputs (the paths' `dot_q8_rows` register tiles, where they have one)
/// give every input exactly its one-input `matvec` and the scalar path's result: for input counts
/// that leave every tile width (4, 2, 1) and numbers of groups that leave every tail of a tile's
/// span (8 / width groups), beyond the float lane threshold too (quantized rows have no other
/// order), and for weights at the sign trick's edge (-128, whose absolute value is the unsigned
/// byte 128) against activations at ±127, where `vpmaddubsw` sums come closest to saturating.
#[test]
fn q8_0_tiles_equal_one_input_dots() {
    let mut rng = Rng(11);
    let scalar = Kernels::available()[0];
    let mut scratch = Scratch::default();
    for cols in [32, 64, 96, 224, 256, 288, 1408] {
        let rows = 19;
        let random = Mat::random(&mut rng, rows, cols);
        // Edge values: -128, ±127 and a few small ones; the first input saturates every group.
        let edge: Vec<i8> = (0..rows * cols)
            .map(|_| [-128i8, -127, 127, 1, -1, 0][(rng.next_u64() % 6) as usize])
            .collect();
        let edge_scales = rng.vec(rows * cols / QK, 1.0);
        let mats = [
            random.refs()[2],
            MatRef {
                rows,
                cols,
                w: Weights::Q8_0 {
                    qs: &edge,
                    scales: &edge_scales,
                },
            },
        ];
        for n in [2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 33] {
            let mut x = rng.vec(n * cols, 2.0);
            for (c, v) in x[..cols].iter_mut().enumerate() {
                *v = if c % 3 == 0 { -1.0 } else { 1.0 };
            }
            for m in &mats {
                let mut want = vec![0f32; n * rows];
                for t in 0..n {
                    let xt = &x[t * cols..(t + 1) * cols];
                    scalar.matvec(&mut want[t * rows..(t + 1) * rows], m, xt, &mut scratch);
                }
                for k in Kernels::available() {
                    let mut got = vec![0f32; n * rows];
                    k.matmul(&mut got, m, &x, n, &mut scratch);
                    assert!(
                        bits(&got) == bits(&want),
                        "{} {cols} cols, {n} inputs",
                        k.name()
                    );
                    for t in 0..n {
                        let mut single = vec![0f32; rows];
                        let xt = &x[t * cols..(t + 1) * cols];
                        k.matvec(&mut single, m, xt, &mut scratch);
                        assert!(bits(&single) == bits(&want[t * rows..(t + 1) * rows]));
                    }
                }
            }
        }
    }
}

/// A matrix's storage, for failure messages (its Debug form prints every weight).
fn kind(w: &Weights) -> &'static str {
    match w {
        Weights::F32(_) => "f32",
        Weights::F16(_) => "f16",
        Weights::Q8_0 { .. } => "q8_0",
        Weights::Q4_0 { .. } => "q4_0",
        Weights::Q8_0Panels { .. } => "q8_0 panels",
        Weights::Q4_0Panels { .. } => "q4_0 panels",
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// Shapes that exercise the SIMD main loops and their tails (groups not a multiple of 8, odd f32 tails).
const SHAPES: [(usize, usize); 5] = [(1, 32), (7, 96), (33, 288), (130, 512), (64, 1408)];

#[test]
fn every_path_agrees_with_scalar() {
    let mut rng = Rng(5);
    let scalar = Kernels::available()[0];
    assert_eq!(scalar.name(), "scalar");
    let mut scratch = Scratch::default();
    for (rows, cols) in SHAPES {
        let mat = Mat::random(&mut rng, rows, cols);
        let x = rng.vec(cols, 3.0);
        for m in mat.refs() {
            let mut want = vec![0f32; rows];
            scalar.matvec(&mut want, &m, &x, &mut scratch);
            let w = dequantized(&m);
            for k in Kernels::available() {
                let mut got = vec![0f32; rows];
                k.matvec(&mut got, &m, &x, &mut scratch);
                if is_quantized(&m) {
                    assert!(
                        bits(&got) == bits(&want),
                        "{} {} {rows}x{cols}",
                        k.name(),
                        kind(&m.w)
                    );
                } else {
                    for r in 0..rows {
                        let mag: f32 = w[r * cols..(r + 1) * cols]
                            .iter()
                            .zip(&x)
                            .map(|(a, b)| (a * b).abs())
                            .sum();
                        assert!(
                            (got[r] - want[r]).abs() <= 1e-5 * mag,
                            "{} row {r}",
                            k.name()
                        );
                    }
                }
            }
        }
    }
    // Odd f32 lengths (not multiples of 8) for the float paths.
    for cols in [1, 7, 9, 31, 63] {
        let w = rng.vec(3 * cols, 1.0);
        let x = rng.vec(cols, 1.0);
        let m = MatRef {
            rows: 3,
            cols,
            w: Weights::F32(&w),
        };
        let mut want = vec![0f32; 3];
        scalar.matvec(&mut want, &m, &x, &mut scratch);
        for k in Kernels::available() {
            let mut got = vec![0f32; 3];
            k.matvec(&mut got, &m, &x, &mut scratch);
            for r in 0..3 {
                assert!(
                    (got[r] - want[r]).abs() <= 1e-5 * cols as f32,
                    "{} cols {cols}",
                    k.name()
                );
            }
        }
    }
}

/// The golden test: fixed inputs, the same q8_0 / q4_0 output bits on every path of every architecture
/// (x86-64 scalar / AVX2 / AVX-512, aarch64 NEON under qemu, wasm32 simd128). A change of the constants
/// changes the reduction order that docs/performance.md specifies.
#[test]
fn golden_q8_0_and_q4_0_outputs() {
    let results = golden_hashes();
    assert_eq!(results.len(), Kernels::available().len());
    for (name, q8, q4) in results {
        eprintln!("{name}: q8_0 {q8:#018x} q4_0 {q4:#018x}");
        assert_eq!(q8, GOLDEN_Q8, "q8_0 golden on {name}");
        assert_eq!(q4, GOLDEN_Q4, "q4_0 golden on {name}");
    }
}

/// Threaded row chunks give exactly the serial result.
#[cfg(feature = "threads")]
#[test]
fn threaded_equals_serial() {
    let mut rng = Rng(6);
    let mat = Mat::random(&mut rng, 517, 512);
    let x = rng.vec(20 * 512, 1.0);
    let mut scratch = Scratch::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let serial_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for m in mat.refs() {
        // 20 inputs: float rows in vector lanes where the path has them.
        for n in [1, 2, 20] {
            let mut par = vec![0f32; n * m.rows];
            let mut ser = vec![0f32; n * m.rows];
            pool.install(|| matmul(&mut par, &m, &x[..n * 512], n, &mut scratch));
            serial_pool.install(|| matmul(&mut ser, &m, &x[..n * 512], n, &mut scratch));
            assert!(bits(&par) == bits(&ser), "{} n={n}", kind(&m.w));
        }
    }
}

#[test]
#[should_panic(expected = "cols % 32")]
fn quantized_shape_is_checked() {
    let qs = vec![0i8; 40];
    let m = MatRef {
        rows: 1,
        cols: 40,
        w: Weights::Q8_0 {
            qs: &qs,
            scales: &[1.0],
        },
    };
    matvec(&mut [0.0], &m, &[0.0; 40], &mut Scratch::default());
}

/// The SIMD paths the CPU supports are really offered (so the comparisons above are not vacuous).
#[test]
fn detected_paths_are_available() {
    let names: Vec<&str> = Kernels::available().iter().map(|k| k.name()).collect();
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert!(names.contains(&"avx2"), "{names:?}");
    }
    #[cfg(target_arch = "aarch64")]
    assert!(names.contains(&"neon"), "{names:?}");
    assert_eq!(Kernels::best().name(), *names.last().unwrap());
}

/// matmul_many (fused projections) == separate matmuls, bit for bit, threaded or not.
#[test]
fn matmul_many_equals_separate_matmuls() {
    let mut rng = Rng(8);
    let (a, b, c) = (
        Mat::random(&mut rng, 512, 256),
        Mat::random(&mut rng, 64, 256),
        Mat::random(&mut rng, 130, 256),
    );
    let mut scratch = Scratch::default();
    for n in [1, 3] {
        let x = rng.vec(n * 256, 1.0);
        for dt in 0..4 {
            let mats = [a.refs()[dt], b.refs()[dt], c.refs()[dt]];
            let mut fused: Vec<Vec<f32>> = mats.iter().map(|m| vec![0f32; n * m.rows]).collect();
            {
                let mut outs: Vec<&mut [f32]> = fused.iter_mut().map(|v| &mut v[..]).collect();
                matmul_many(&mut outs, &mats, &x, n, &mut scratch);
            }
            for (m, got) in mats.iter().zip(&fused) {
                let mut want = vec![0f32; n * m.rows];
                Kernels::available()[0].matmul(&mut want, m, &x, n, &mut scratch);
                if is_quantized(m) {
                    assert!(bits(got) == bits(&want), "{} n={n}", kind(&m.w));
                } else {
                    let mut same = vec![0f32; n * m.rows];
                    matmul(&mut same, m, &x, n, &mut scratch);
                    assert!(bits(got) == bits(&same), "{} n={n}", kind(&m.w));
                }
            }
        }
    }
}

/// Owned panel-layout copies of a matrix's q8_0 and q4_0 weights (packed by `panel`'s functions).
struct PanelMat {
    q8: (Vec<i8>, Vec<f32>),
    q4: (Vec<u8>, Vec<f32>),
}

impl PanelMat {
    fn of(m: &Mat) -> PanelMat {
        let groups = m.cols / QK;
        let mut q8: Vec<u8> = m.q8.0.iter().map(|&v| v as u8).collect();
        panel::pack_q8_values(&mut q8, m.rows, m.cols);
        let mut q4 = m.q4.0.clone();
        panel::pack_q4_values(&mut q4, m.rows, m.cols);
        let (mut s8, mut s4) = (m.q8.1.clone(), m.q4.1.clone());
        panel::pack_scales(&mut s8, m.rows, groups);
        panel::pack_scales(&mut s4, m.rows, groups);
        PanelMat {
            q8: (q8.into_iter().map(|v| v as i8).collect(), s8),
            q4: (q4, s4),
        }
    }
    /// (row layout, panel layout) pairs for q8_0 and q4_0.
    fn pairs<'a>(&'a self, m: &'a Mat) -> [(MatRef<'a>, MatRef<'a>); 2] {
        let [_, _, q8, q4] = m.refs();
        let p = |w| MatRef {
            rows: m.rows,
            cols: m.cols,
            w,
        };
        [
            (
                q8,
                p(Weights::Q8_0Panels {
                    qs: &self.q8.0,
                    scales: &self.q8.1,
                }),
            ),
            (
                q4,
                p(Weights::Q4_0Panels {
                    packed: &self.q4.0,
                    scales: &self.q4.1,
                }),
            ),
        ]
    }
}

/// The panel layout holds the same values (dequantized rows equal) and every path multiplies it to
/// exactly the bits of the scalar row-layout definition, for one and several inputs.
#[test]
fn panel_layout_gives_the_row_layout_bits() {
    let mut rng = Rng(12);
    let scalar = Kernels::available()[0];
    let mut scratch = Scratch::default();
    // 1, 3, 9, 16, 44 and 65 groups: the 8-group main loop and its tails, and (65) the VNNI
    // kernel's second block of 64 groups.
    for (rows, cols) in [
        (16, 32),
        (32, 96),
        (48, 288),
        (16, 512),
        (64, 1408),
        (16, 2080),
    ] {
        let mat = Mat::random(&mut rng, rows, cols);
        let panels = PanelMat::of(&mat);
        for (row_layout, panel_layout) in panels.pairs(&mat) {
            assert_eq!(dequantized(&row_layout), dequantized(&panel_layout));
            // 13 inputs: VNNI tiles of 8 and 5 (two panels per call: 32, 48 and 64 rows give pairs,
            // 48 a single panel after its pair), AVX2 tiles of 4, 4, 4 and 1.
            for n in [1, 3, 6, 13] {
                let x = rng.vec(n * cols, 2.0);
                let mut want = vec![0f32; n * rows];
                scalar.matmul(&mut want, &row_layout, &x, n, &mut scratch);
                for k in Kernels::available() {
                    let mut got = vec![0f32; n * rows];
                    k.matmul(&mut got, &panel_layout, &x, n, &mut scratch);
                    assert!(
                        bits(&got) == bits(&want),
                        "{} {:?} {rows}x{cols} n={n}",
                        k.name(),
                        panel_layout.w
                    );
                }
            }
        }
    }
}

/// Threaded panel chunks (whole panels per chunk) give exactly the serial row-layout result.
#[cfg(feature = "threads")]
#[test]
fn threaded_panels_equal_serial_rows() {
    let mut rng = Rng(13);
    let mat = Mat::random(&mut rng, 1408, 512);
    let panels = PanelMat::of(&mat);
    let x = rng.vec(3 * 512, 1.0);
    let mut scratch = Scratch::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for (row_layout, panel_layout) in panels.pairs(&mat) {
        for n in [1, 3] {
            let mut par = vec![0f32; n * mat.rows];
            let mut ser = vec![0f32; n * mat.rows];
            pool.install(|| matmul(&mut par, &panel_layout, &x[..n * 512], n, &mut scratch));
            Kernels::available()[0].matmul(&mut ser, &row_layout, &x[..n * 512], n, &mut scratch);
            assert!(bits(&par) == bits(&ser), "{:?} n={n}", panel_layout.w);
        }
    }
}

/// Activation quantization rounds exactly like `f32::round` (half away from zero), ties included.
#[test]
fn q8_0_quantization_rounds_half_away_from_zero() {
    let reference = |w: &[f32]| -> Vec<i8> {
        w.chunks_exact(QK)
            .flat_map(|g| {
                let d = g.iter().fold(0f32, |m, &x| m.max(x.abs())) / 127.0;
                g.iter()
                    .map(move |&x| {
                        if d == 0.0 {
                            0
                        } else {
                            (x / d).round().clamp(-127.0, 127.0) as i8
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    // amax 127 makes the scale exactly 1, so these values are the quotients themselves: ties at ±k.5.
    let mut ties = vec![
        127.0f32,
        -0.5,
        0.5,
        1.5,
        -1.5,
        2.5,
        -126.5,
        126.5,
        0.49999997,
        -0.49999997,
    ];
    ties.extend((0..22).map(|i| i as f32 * 5.5 - 60.0));
    let mut rng = Rng(21);
    let mut w = ties;
    w.extend(rng.vec(64 * 32, 7.0));
    w.extend([0.0; 32]);
    // NaN is skipped by the maximum and quantizes to 0; an infinite maximum makes every quotient 0 or NaN.
    w.extend((0..32).map(|i| if i % 5 == 0 { f32::NAN } else { i as f32 - 9.7 }));
    w.extend((0..32).map(|i| if i == 3 { f32::INFINITY } else { i as f32 }));
    w.extend([f32::NAN; 32]);
    let (qs, scales) = quantize_q8_0(&w, 32);
    assert_eq!(qs, reference(&w));
    assert_eq!(&qs[..3], &[127, -1, 1]);
    let want: Vec<u32> = w
        .chunks_exact(QK)
        .map(|g| (g.iter().fold(0f32, |m, &x| m.max(x.abs())) / 127.0).to_bits())
        .collect();
    assert_eq!(scales.iter().map(|d| d.to_bits()).collect::<Vec<_>>(), want);
    // The scalar code (baseline build) agrees with the path the CPU dispatches to.
    let (mut q2, mut s2) = (vec![0i8; w.len()], vec![0f32; w.len() / QK]);
    super::quant::quantize_q8_0_scalar(&w, &mut q2, &mut s2);
    assert_eq!(q2, qs);
    assert_eq!(bits(&s2), bits(&scales));
}
