//! Kernel throughput (bytes of weights per second) for every ISA path this CPU has, per dtype, for
//! the matrix shapes of the N56 model (dim 512, hidden 1408, vocab 16384). Single-threaded matvec,
//! plus the best path's matvec on 2 threads and a 16-token matmul (prefill). q8_0 / q4_0 also in
//! the 16-row panel layout ("q8_0_panels", "q4_0_panels") on paths with panel kernels: the layout
//! models get at load on those paths, so it is what decode runs there.
//! Run: `cargo bench -p nano-infer --bench kernels` (add a filter such as `q8_0` to narrow it).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nano_infer::kernels::{
    f32_to_f16, panel, quantize_q4_0, quantize_q8_0, Kernels, MatRef, Scratch, Weights,
};
use std::hint::black_box;
use std::time::Duration;

struct Owned {
    f32: Vec<f32>,
    f16: Vec<u16>,
    q8: (Vec<i8>, Vec<f32>),
    q4: (Vec<u8>, Vec<f32>),
    /// The same q8_0 / q4_0 values and scales rearranged into 16-row panels.
    q8_panels: (Vec<i8>, Vec<f32>),
    q4_panels: (Vec<u8>, Vec<f32>),
}

fn owned(rows: usize, cols: usize) -> Owned {
    let mut s = 0x1234_5678u32;
    let f32: Vec<f32> = (0..rows * cols)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect();
    let (q8, q4) = (quantize_q8_0(&f32, cols), quantize_q4_0(&f32, cols));
    let mut q8_panels = q8.clone();
    let mut bytes: Vec<u8> = q8_panels.0.iter().map(|&v| v as u8).collect();
    panel::pack_q8_values(&mut bytes, rows, cols);
    q8_panels.0 = bytes.into_iter().map(|v| v as i8).collect();
    panel::pack_scales(&mut q8_panels.1, rows, cols / 32);
    let mut q4_panels = q4.clone();
    panel::pack_q4_values(&mut q4_panels.0, rows, cols);
    panel::pack_scales(&mut q4_panels.1, rows, cols / 32);
    Owned {
        f16: f32.iter().map(|&v| f32_to_f16(v)).collect(),
        q8,
        q4,
        q8_panels,
        q4_panels,
        f32,
    }
}

/// (dtype name, matrix, bytes of weights).
fn mats(o: &Owned, rows: usize, cols: usize) -> Vec<(&'static str, MatRef<'_>, u64)> {
    let m = |w| MatRef { rows, cols, w };
    let n = (rows * cols) as u64;
    let g = n / 32;
    vec![
        ("f32", m(Weights::F32(&o.f32)), 4 * n),
        ("f16", m(Weights::F16(&o.f16)), 2 * n),
        (
            "q8_0",
            m(Weights::Q8_0 {
                qs: &o.q8.0,
                scales: &o.q8.1,
            }),
            n + 4 * g,
        ),
        (
            "q4_0",
            m(Weights::Q4_0 {
                packed: &o.q4.0,
                scales: &o.q4.1,
            }),
            n / 2 + 4 * g,
        ),
        (
            "q8_0_panels",
            m(Weights::Q8_0Panels {
                qs: &o.q8_panels.0,
                scales: &o.q8_panels.1,
            }),
            n + 4 * g,
        ),
        (
            "q4_0_panels",
            m(Weights::Q4_0Panels {
                packed: &o.q4_panels.0,
                scales: &o.q4_panels.1,
            }),
            n / 2 + 4 * g,
        ),
    ]
}

const SHAPES: [(&str, usize, usize); 3] = [
    ("qkv_512x512", 1024, 512),
    ("w1_1408x512", 1408, 512),
    ("w2_512x1408", 512, 1408),
];

fn bench(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut scratch = Scratch::default();
    for (shape, rows, cols) in SHAPES {
        let o = owned(rows, cols);
        let x: Vec<f32> = (0..16 * cols)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.1)
            .collect();
        let mut out = vec![0f32; 16 * rows];
        for (dtype, m, bytes) in mats(&o, rows, cols) {
            let mut grp = c.benchmark_group(format!("matvec/{dtype}/{shape}"));
            grp.throughput(Throughput::Bytes(bytes));
            // The panel layout only on paths with panel kernels (elsewhere it is never used).
            let paths = Kernels::available().into_iter();
            let paths: Vec<Kernels> = if m.w.in_panels() {
                paths.filter(|k| k.panels().is_some()).collect()
            } else {
                paths.collect()
            };
            let best = Kernels::best();
            if m.w.in_panels() && best.panels().is_none() {
                grp.finish();
                continue;
            }
            for k in paths {
                grp.bench_function(BenchmarkId::new(k.name(), "1t"), |b| {
                    one.install(|| {
                        b.iter(|| {
                            k.matvec(&mut out[..rows], &m, black_box(&x[..cols]), &mut scratch)
                        })
                    })
                });
            }
            grp.bench_function(BenchmarkId::new(best.name(), "2t"), |b| {
                two.install(|| {
                    b.iter(|| {
                        best.matvec(&mut out[..rows], &m, black_box(&x[..cols]), &mut scratch)
                    })
                })
            });
            // 16 prompt tokens per weight read: bytes/s counts the weights once, like decode.
            grp.bench_function(BenchmarkId::new(best.name(), "matmul16_1t"), |b| {
                one.install(|| {
                    b.iter(|| best.matmul(&mut out, &m, black_box(&x), 16, &mut scratch))
                })
            });
            grp.finish();
        }
    }
}

criterion_group! {
    name = kernels;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800));
    targets = bench
}
criterion_main!(kernels);
