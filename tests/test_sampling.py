"""Sampler: the cases of docs/sampling.md, checked against hand-computed expectations."""

import math

import numpy as np
import pytest
from nano.sampling import Sampler, SplitMix64, apply_repetition_penalty, sample_next


def test_splitmix64_reference_values():
    rng = SplitMix64(0)
    assert rng.next_u64() == 0xE220A8397B1DCDAF
    assert rng.next_u64() == 0x6E789E6AA1B965F4


def test_next_f64_uses_top_53_bits():
    a, b = SplitMix64(0), SplitMix64(0)
    assert a.next_f64() == (b.next_u64() >> 11) / 2**53


def test_greedy_ties_go_to_lowest_id_and_draw_nothing():
    rng = SplitMix64(5)
    logits = np.array([0.1, 3.0, 3.0, -1.0], dtype=np.float32)
    assert sample_next(logits, [], rng, temperature=0) == 1
    assert rng.state == 5  # no random number drawn


def test_top_k_one_is_greedy_for_any_seed():
    logits = np.array([0.5, 2.0, 1.9, 2.0], dtype=np.float32)
    for seed in range(20):
        assert sample_next(logits, [], SplitMix64(seed), temperature=1.5, top_k=1) == 1


def test_penalty_is_sign_aware_and_once_per_distinct_id():
    logits = np.array([2.0, -2.0, 1.0, 0.0], dtype=np.float32)
    out = apply_repetition_penalty(logits, [0, 1, 1, 1, 3], 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0, 0.0]


def test_penalty_on_negative_logits_changes_greedy_choice():
    logits = np.array([-1.0, -1.5], dtype=np.float32)
    assert sample_next(logits, [], SplitMix64(0), temperature=0) == 0
    # id 0 seen: -1.0 * 2 = -2.0 < -1.5 (dividing would have raised it to -0.5)
    assert sample_next(logits, [0], SplitMix64(0), temperature=0, repetition_penalty=2.0) == 1


def draw(logits, seed, **kw):
    return sample_next(np.array(logits, dtype=np.float32), [], SplitMix64(seed), **kw)


def test_draw_follows_the_cumulative_walk():
    logits = [0.0, math.log(3.0)]  # probabilities 1/4, 3/4; order: id 1 first
    for seed in range(30):
        u = SplitMix64(seed).next_f64()
        expected = 1 if u < 0.75 else 0
        assert draw(logits, seed, temperature=1.0) == expected


def test_top_p_keeps_shortest_prefix_reaching_p():
    logits = [math.log(0.5), math.log(0.3), math.log(0.2)]
    # p = 0.5: the first id alone reaches 0.5 (>= p), so it is the only one kept
    assert {draw(logits, s, temperature=1.0, top_p=0.5) for s in range(40)} == {0}
    # p = 0.8: ids 0 and 1 (cumulative 0.8 >= 0.8 up to rounding, or 1.0); target = u * S
    for seed in range(40):
        u = SplitMix64(seed).next_f64()
        got = draw(logits, seed, temperature=1.0, top_p=0.79)
        assert got == (0 if u * 0.8 < 0.5 else 1)


@pytest.mark.parametrize("p", [0.0, 1.0, -1.0, 2.0])
def test_top_p_off_values_keep_everything(p):
    logits = [0.0, 0.0, 0.0]
    ref = [draw(logits, s, temperature=1.0) for s in range(30)]
    assert [draw(logits, s, temperature=1.0, top_p=p) for s in range(30)] == ref
    assert set(ref) == {0, 1, 2}


def test_tiny_top_p_keeps_at_least_one():
    assert {draw([1.0, 0.9, 0.8], s, temperature=1.0, top_p=1e-9) for s in range(10)} == {0}


def test_temperature_scales_before_softmax():
    logits = [2.0, 0.0]  # T = 2 -> logits 1, 0 -> p0 = e/(e+1)
    p0 = math.e / (math.e + 1)
    for seed in range(30):
        u = SplitMix64(seed).next_f64()
        assert draw(logits, seed, temperature=2.0) == (0 if u < p0 else 1)


def test_sampler_draws_one_number_per_token():
    s = Sampler(temperature=1.0, seed=3)
    logits = np.zeros(5, dtype=np.float32)
    s.sample(logits, [])
    s.sample(logits, [])
    ref = SplitMix64(3)
    ref.next_u64()
    ref.next_u64()
    assert s.rng.state == ref.state
