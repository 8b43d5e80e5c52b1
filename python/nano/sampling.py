"""Next-token choice exactly as docs/sampling.md specifies (shared with the Rust engine and WASM page).

Works on numpy arrays so it is independent of torch's reduction order: sums and cumulative sums walk the
kept ids sequentially in the spec's order, as the Rust implementation does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_MASK64 = (1 << 64) - 1


def check_options(temperature: float, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0) -> None:
    """Raise ValueError for options no Nano engine accepts (NaN or inf, temperature < 0, repetition_penalty
    <= 0, top_k < 0). The check is the Rust engine's own (``SamplerOptions::validate``, through
    ``nano._native``), so every engine refuses the same options with the same message."""
    from nano import _native

    _native.check_sampling_options(temperature, top_k, top_p, repetition_penalty)


class SplitMix64:
    """The spec's RNG: one u64 of state, advanced by the golden-ratio increment."""

    def __init__(self, seed: int):
        self.state = int(seed) & _MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def next_f64(self) -> float:
        return (self.next_u64() >> 11) * 2.0**-53


def apply_repetition_penalty(logits: np.ndarray, seen: Iterable[int], penalty: float) -> np.ndarray:
    """Step 1 (f32): each distinct seen id once; positive logits divided by r, others multiplied."""
    out = np.array(logits, dtype=np.float32, copy=True)
    if penalty == 1.0:
        return out
    r = np.float32(penalty)
    ids = np.unique(np.fromiter((int(i) for i in seen), dtype=np.int64))
    ids = ids[(ids >= 0) & (ids < out.shape[0])]
    vals = out[ids]
    out[ids] = np.where(vals > 0, vals / r, vals * r).astype(np.float32)
    return out


def sample_next(logits, seen: Iterable[int], rng: SplitMix64, *, temperature: float, top_k: int = 0,
                top_p: float = 1.0, repetition_penalty: float = 1.0) -> int:
    """Choose the next id from the last position's logits (1-D, one per vocabulary id)."""
    check_options(temperature, top_k, top_p, repetition_penalty)
    x = apply_repetition_penalty(np.asarray(logits, dtype=np.float32), seen, repetition_penalty)
    vocab = x.shape[0]
    if temperature == 0:
        return int(np.argmax(x))  # first maximum = lowest id among ties
    scaled = x.astype(np.float64) / float(temperature)
    order = np.lexsort((np.arange(vocab), -scaled))  # logit descending, then id ascending
    if 0 < top_k < vocab:
        order = order[:top_k]
    kept = scaled[order]
    e = np.exp(kept - kept[0])
    probs = e / np.cumsum(e)[-1]  # sequential sum in the spec's order
    cum = np.cumsum(probs)
    if 0 < top_p < 1:
        reach = np.nonzero(cum >= top_p)[0]
        n = int(reach[0]) + 1 if reach.size else len(order)
        order, cum = order[:n], cum[:n]
    mass = cum[-1]
    target = rng.next_f64() * mass
    hit = np.nonzero(cum > target)[0]
    return int(order[hit[0]] if hit.size else order[-1])


class Sampler:
    """Holds the options and the RNG of one generation (seeded once, one draw per sampled token)."""

    def __init__(self, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 repetition_penalty: float = 1.0, seed: int = 0):
        check_options(temperature, top_k, top_p, repetition_penalty)
        self.temperature = temperature
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.repetition_penalty = float(repetition_penalty)
        self.rng = SplitMix64(seed)

    def sample(self, logits, seen: Iterable[int]) -> int:
        if hasattr(logits, "detach"):
            logits = logits.detach().float().cpu().numpy()
        return sample_next(logits, seen, self.rng, temperature=self.temperature, top_k=self.top_k,
                           top_p=self.top_p, repetition_penalty=self.repetition_penalty)
