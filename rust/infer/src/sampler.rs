//! The sampler of docs/sampling.md (the one specification every Nano engine follows), with its
//! SplitMix64 random number generator.
use crate::error::{Error, Result};

/// SplitMix64: one u64 of state, seeded directly with the seed.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Sampling options (the "off" values of docs/sampling.md disable a step).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerOptions {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
}

impl SamplerOptions {
    /// The one check of sampling options that every engine makes (the native engine, the WASM
    /// binding and, through `nano._native`, PyTorch's `nano.infer`), so that all of them refuse the
    /// same options with the same message: a temperature that is not a finite number >= 0, a top_p
    /// that is not a finite number, a repetition penalty that is not a finite number > 0. (A top_p
    /// outside (0, 1) is valid: it turns the step off, as docs/sampling.md says.)
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be a finite number >= 0, got {}",
                self.temperature
            ));
        }
        if !self.top_p.is_finite() {
            return bad(format!("top_p must be a finite number, got {}", self.top_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty must be a finite number > 0, got {}",
                self.repetition_penalty
            ));
        }
        Ok(())
    }

    /// `top_k` from a signed count (bindings whose callers may pass a negative one).
    pub fn top_k_from(top_k: i64) -> Result<usize> {
        usize::try_from(top_k)
            .map_err(|_| Error::InvalidInput(format!("top_k must be >= 0, got {top_k}")))
    }
}

/// Picks the next token from the last position's logits; `seen` = distinct-or-not prompt and generated ids.
pub struct Sampler {
    opts: SamplerOptions,
    rng: SplitMix64,
    /// Reused across calls: (logit, id) pairs in sampling order.
    order: Vec<(f64, u32)>,
    /// Reused across calls: [`order_key`] of every id, and the other buffer of its radix sort.
    keys: Vec<u64>,
    spare: Vec<u64>,
    /// Reused across calls: marks ids already penalised.
    penalised: Vec<bool>,
}

impl Sampler {
    pub fn new(opts: SamplerOptions, seed: u64) -> Self {
        Sampler {
            opts,
            rng: SplitMix64::new(seed),
            order: Vec::new(),
            keys: Vec::new(),
            spare: Vec::new(),
            penalised: Vec::new(),
        }
    }

    pub fn sample(&mut self, logits: &mut [f32], seen: &[u32]) -> u32 {
        self.penalise(logits, seen);
        if self.opts.temperature == 0.0 {
            return argmax(logits);
        }
        let t = self.opts.temperature as f64;
        // Step 4's order, by integer keys (the same order as comparing `l as f64 / t`, see
        // `order_key`); with top-k, only the k first are put in order.
        self.keys.clear();
        self.keys.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| order_key(l, i as u32)),
        );
        let k = self.opts.top_k;
        if k > 0 && k < self.keys.len() {
            self.keys.select_nth_unstable(k - 1);
            self.keys.truncate(k);
            self.keys.sort_unstable();
        } else {
            // Built in id order above, as the radix sort needs.
            sort_id_ordered_keys(&mut self.keys, &mut self.spare);
        }
        self.order.clear();
        self.order.extend(self.keys.iter().map(|&key| {
            let id = key as u32;
            (logits[id as usize] as f64 / t, id)
        }));
        let max = self.order[0].0;
        let mut sum = 0.0;
        for e in self.order.iter_mut() {
            e.0 = (e.0 - max).exp();
            sum += e.0;
        }
        for e in self.order.iter_mut() {
            e.0 /= sum;
        }
        let p = self.opts.top_p as f64;
        let mut mass = 1.0;
        if p > 0.0 && p < 1.0 {
            let mut acc = 0.0;
            let mut keep = self.order.len();
            for (i, e) in self.order.iter().enumerate() {
                acc += e.0;
                if acc >= p {
                    keep = i + 1;
                    break;
                }
            }
            self.order.truncate(keep);
            mass = acc; // the kept prefix's mass (all of it when rounding never reached p)
        }
        let target = self.rng.next_f64() * mass;
        let mut acc = 0.0;
        for e in &self.order {
            acc += e.0;
            if acc > target {
                return e.1;
            }
        }
        self.order.last().expect("at least one id").1
    }

    /// Step 1: each distinct seen id once, sign-aware, in f32.
    fn penalise(&mut self, logits: &mut [f32], seen: &[u32]) {
        let r = self.opts.repetition_penalty;
        if r == 1.0 {
            return;
        }
        self.penalised.clear();
        self.penalised.resize(logits.len(), false);
        for &id in seen {
            let i = id as usize;
            if i < logits.len() && !self.penalised[i] {
                self.penalised[i] = true;
                logits[i] = if logits[i] > 0.0 {
                    logits[i] / r
                } else {
                    logits[i] * r
                };
            }
        }
    }
}

/// Largest logit; ties go to the lowest id.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// A key whose ascending order is the sampling order of (logit descending, id ascending): the f32's
/// bits mapped to an integer that grows with the float's total order, inverted, above the id. Dividing
/// by a temperature in f64 keeps this order: f64 holds every f32 exactly, two distinct f32 values differ
/// by at least 2^-24 of their magnitude (or in sign), far more than the 2^-53 by which the rounded
/// quotients can move, and equal values give equal quotients (then the id decides, in both).
fn order_key(logit: f32, id: u32) -> u64 {
    let bits = logit.to_bits();
    let ascending = if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    };
    (u64::from(!ascending) << 32) | u64::from(id)
}

/// Sorts keys of [`order_key`] whose ids (the low 32 bits) ascend as given, into ascending order,
/// in linear time: a stable least-significant-digit radix sort over the high 32 bits alone (four
/// 8-bit digits; a digit every key shares is skipped). Stability keeps keys with equal high halves
/// in the order given, which is their id order, so the result is the keys' full u64 order — the
/// order `sort_unstable` gives, at a fraction of its cost for a whole vocabulary.
fn sort_id_ordered_keys(keys: &mut Vec<u64>, spare: &mut Vec<u64>) {
    const DIGITS: usize = 4;
    let digit = |key: u64, d: usize| (key >> (32 + 8 * d)) as usize & 0xff;
    debug_assert!(keys.windows(2).all(|w| (w[0] as u32) < (w[1] as u32)));
    let mut counts = [[0usize; 256]; DIGITS];
    for &key in keys.iter() {
        for (d, count) in counts.iter_mut().enumerate() {
            count[digit(key, d)] += 1;
        }
    }
    spare.clear();
    spare.resize(keys.len(), 0);
    for (d, count) in counts.iter().enumerate() {
        if count.contains(&keys.len()) {
            continue; // every key has the same digit here: the pass would change nothing
        }
        let mut next = [0usize; 256];
        let mut at = 0;
        for (n, &c) in next.iter_mut().zip(count) {
            *n = at;
            at += c;
        }
        for &key in keys.iter() {
            let slot = &mut next[digit(key, d)];
            spare[*slot] = key;
            *slot += 1;
        }
        std::mem::swap(keys, spare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_as_the_quotients_compare() {
        let mut rng = SplitMix64::new(5);
        let specials = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            f32::MAX,
            f32::MIN,
            1.0,
            1.0 + f32::EPSILON,
            -1.0,
        ];
        for t in [1.0f64, 0.7, 1e-3, 3.0, 1e30, 1.17e-38] {
            let mut logits: Vec<f32> = (0..4000)
                .map(|i| match i % 4 {
                    0 => specials[(rng.next_u64() % specials.len() as u64) as usize],
                    1 => (rng.next_f64() * 8.0 - 4.0) as f32,
                    2 => ((rng.next_f64() * 8.0 - 4.0) as f32 * 4.0).round() / 4.0, // ties
                    _ => f32::from_bits(rng.next_u64() as u32 & !(0xff << 23)),     // subnormals
                })
                .collect();
            logits.push(1.0);
            let mut want: Vec<(f64, u32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (l as f64 / t, i as u32))
                .collect();
            want.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut keys: Vec<u64> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| order_key(l, i as u32))
                .collect();
            let mut radix = keys.clone();
            sort_id_ordered_keys(&mut radix, &mut Vec::new());
            keys.sort_unstable();
            assert_eq!(radix, keys, "t = {t}");
            let got: Vec<u32> = keys.iter().map(|&k| k as u32).collect();
            assert_eq!(got, want.iter().map(|w| w.1).collect::<Vec<_>>(), "t = {t}");
        }
    }

    #[test]
    fn radix_sort_equals_the_comparison_sort() {
        let mut rng = SplitMix64::new(11);
        let mut spare = vec![7; 3]; // stale contents must not matter
        for len in [0usize, 1, 2, 3, 255, 256, 257, 5000] {
            for spread in [0u64, 1, 4, 256, 1 << 16, 1 << 32] {
                let mut keys: Vec<u64> = (0..len as u32)
                    .map(|id| {
                        let high = if spread == 0 {
                            9
                        } else {
                            rng.next_u64() % spread
                        };
                        let high = if spread == 1 << 32 {
                            rng.next_u64() >> 32
                        } else {
                            high
                        };
                        (high << 32) | u64::from(id)
                    })
                    .collect();
                let mut want = keys.clone();
                want.sort_unstable();
                sort_id_ordered_keys(&mut keys, &mut spare);
                assert_eq!(keys, want, "len {len}, spread {spread}");
            }
        }
    }

    fn opts(temperature: f32, top_k: usize, top_p: f32, repetition_penalty: f32) -> SamplerOptions {
        SamplerOptions {
            temperature,
            top_k,
            top_p,
            repetition_penalty,
        }
    }

    #[test]
    fn validate_refuses_non_finite_and_out_of_range_options() {
        let ok = opts(0.7, 5, 0.9, 1.1);
        assert!(ok.validate().is_ok());
        // "off" values and a top_p outside (0, 1) are valid
        assert!(opts(0.0, 0, 1.0, 1.0).validate().is_ok());
        assert!(opts(1.0, 0, -3.0, 1.0).validate().is_ok());
        assert!(opts(1.0, 0, 7.0, 1.0).validate().is_ok());
        let nan = f32::NAN;
        let inf = f32::INFINITY;
        for (bad, word) in [
            (opts(nan, 0, 1.0, 1.0), "temperature"),
            (opts(inf, 0, 1.0, 1.0), "temperature"),
            (opts(-0.5, 0, 1.0, 1.0), "temperature"),
            (opts(1.0, 0, nan, 1.0), "top_p"),
            (opts(1.0, 0, -inf, 1.0), "top_p"),
            (opts(1.0, 0, 1.0, nan), "repetition_penalty"),
            (opts(1.0, 0, 1.0, inf), "repetition_penalty"),
            (opts(1.0, 0, 1.0, 0.0), "repetition_penalty"),
            (opts(1.0, 0, 1.0, -2.0), "repetition_penalty"),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.starts_with(word), "{bad:?}: {e}");
        }
        assert_eq!(SamplerOptions::top_k_from(3).unwrap(), 3);
        assert!(SamplerOptions::top_k_from(-1).is_err());
    }

    #[test]
    fn splitmix_reference_values() {
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn next_f64_uses_top_53_bits() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let u = a.next_f64();
        assert_eq!(u, (b.next_u64() >> 11) as f64 / 9007199254740992.0);
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn greedy_takes_lowest_id_on_ties() {
        let mut s = Sampler::new(opts(0.0, 0, 1.0, 1.0), 0);
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_is_sign_aware_and_once_per_id() {
        let mut s = Sampler::new(opts(0.0, 0, 1.0, 2.0), 0);
        let mut l = [4.0, -1.0, 3.0];
        // id 0 seen twice: divided once (4 -> 2), id 1 negative: multiplied (-1 -> -2)
        assert_eq!(s.sample(&mut l, &[0, 0, 1]), 2);
        assert_eq!(l, [2.0, -2.0, 3.0]);
    }

    /// Independent re-computation of steps 3-8 for one draw, written out by hand.
    fn reference(logits: &[f32], t: f64, k: usize, p: f64, u: f64) -> u32 {
        let mut ids: Vec<usize> = (0..logits.len()).collect();
        ids.sort_by(|&a, &b| {
            (logits[b] as f64)
                .partial_cmp(&(logits[a] as f64))
                .unwrap()
                .then(a.cmp(&b))
        });
        if k > 0 && k < ids.len() {
            ids.truncate(k);
        }
        let l: Vec<f64> = ids.iter().map(|&i| logits[i] as f64 / t).collect();
        let z: f64 = l.iter().map(|x| (x - l[0]).exp()).sum();
        let probs: Vec<f64> = l.iter().map(|x| (x - l[0]).exp() / z).collect();
        let mut n = probs.len();
        let mut s = 1.0;
        if p > 0.0 && p < 1.0 {
            let mut acc = 0.0;
            for (i, q) in probs.iter().enumerate() {
                acc += q;
                if acc >= p {
                    n = i + 1;
                    break;
                }
            }
            s = probs[..n].iter().sum();
        }
        let target = u * s;
        let mut acc = 0.0;
        for i in 0..n {
            acc += probs[i];
            if acc > target {
                return ids[i] as u32;
            }
        }
        ids[n - 1] as u32
    }

    #[test]
    fn draws_match_a_hand_written_reference() {
        let logits: Vec<f32> = (0..50)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7)
            .collect();
        for (t, k, p) in [
            (1.0, 0, 1.0),
            (0.7, 5, 1.0),
            (1.3, 0, 0.9),
            (0.9, 10, 0.5),
            (2.0, 3, 0.0),
        ] {
            let mut s = Sampler::new(opts(t, k, p, 1.0), 42);
            let mut rng = SplitMix64::new(42);
            for _ in 0..200 {
                let want = reference(&logits, t as f64, k, p as f64, rng.next_f64());
                assert_eq!(s.sample(&mut logits.clone(), &[]), want);
            }
        }
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..30).map(|i| (i as f32).sin()).collect();
        let run = |seed| {
            let mut s = Sampler::new(opts(1.0, 0, 0.95, 1.0), seed);
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
