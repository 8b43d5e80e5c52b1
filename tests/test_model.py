"""Transformer: contract names, KV cache = full recompute, initial loss, RoPE convention, FLOPs formula."""

import math

import pytest
import torch
from helpers import tiny_config
from nano.model import ModelConfig, Transformer, apply_rope, base_hash, flops_per_token, rope_tables

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> ModelConfig:
    return tiny_config(**{"vocab_size": 97, **kw})


def test_state_dict_names_and_shapes_follow_the_contract():
    cfg = tiny()
    sd = Transformer(cfg).state_dict()
    hd = cfg.head_dim
    expected = {
        "tok_embeddings.weight": (97, 32),
        "norm.weight": (32,),
        "output.weight": (97, 32),
    }
    for i in range(2):
        expected.update({
            f"layers.{i}.attention_norm.weight": (32,),
            f"layers.{i}.attention.wq.weight": (4 * hd, 32),
            f"layers.{i}.attention.wk.weight": (2 * hd, 32),
            f"layers.{i}.attention.wv.weight": (2 * hd, 32),
            f"layers.{i}.attention.wo.weight": (32, 4 * hd),
            f"layers.{i}.ffn_norm.weight": (32,),
            f"layers.{i}.feed_forward.w1.weight": (64, 32),
            f"layers.{i}.feed_forward.w2.weight": (32, 64),
            f"layers.{i}.feed_forward.w3.weight": (64, 32),
        })
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert sd["output.weight"].data_ptr() == sd["tok_embeddings.weight"].data_ptr()


def test_learned_positions_only_without_rope():
    sd = Transformer(tiny(use_rope=False)).state_dict()
    assert tuple(sd["pos_embeddings.weight"].shape) == (32, 32)


def test_config_round_trip_and_original_keys():
    cfg = tiny(rope_theta=500.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    original = {"block_size": 32, "vocab_size": 97, "n_layer": 2, "n_embd": 32, "n_head": 4, "n_kv_head": 2,
                "n_hidden": 64, "dropout": 0.0, "bias": False, "use_rope": True, "norm_eps": 1e-5,
                "is_causal": True}
    assert ModelConfig.from_json(__import__("json").dumps(original)).rope_theta == 10000.0


@pytest.mark.parametrize("bad", [dict(n_head=5), dict(n_kv_head=3), dict(vocab_size=0)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="model config"):
        tiny(**bad)


def test_initial_loss_is_about_ln_vocab():
    torch.manual_seed(0)
    cfg = tiny(vocab_size=256)
    model = Transformer(cfg)
    x = torch.randint(0, 256, (8, 32))
    y = torch.randint(0, 256, (8, 32))
    _, loss = model(x, y)
    assert abs(loss.item() - math.log(256)) < 0.1


def test_rope_rotates_interleaved_pairs():
    cos, sin = rope_tables(4, 3, 10000.0)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    out = apply_rope(x, cos, sin)
    # independent reference: pair (x0, x1) rotated by pos*freq0, pair (x2, x3) by pos*freq1
    for pos in range(3):
        for i, (a, b) in enumerate([(1.0, 2.0), (3.0, 4.0)]):
            ang = pos / 10000.0 ** (2 * i / 4)
            ref = (a * math.cos(ang) - b * math.sin(ang), a * math.sin(ang) + b * math.cos(ang))
            got = out[0, pos, 0, 2 * i:2 * i + 2].tolist()
            assert got == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("use_rope", [True, False])
def test_kv_cache_matches_full_recompute(use_rope):
    torch.manual_seed(1)
    model = Transformer(tiny(use_rope=use_rope)).eval()
    idx = torch.randint(0, 97, (2, 20))
    full, _ = model(idx)
    cache = model.new_kv_cache(batch_size=2)
    assert cache.k[0].shape == (2, 2, 32, 8)  # n_kv_head heads stored, not expanded
    pieces = [model(idx[:, :7], kv_cache=cache)[0]]  # prefill
    pieces.append(model(idx[:, 7:12], kv_cache=cache)[0])  # a chunk after a cached prefix
    for t in range(12, 20):  # single-token decode
        pieces.append(model(idx[:, t:t + 1], kv_cache=cache)[0])
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_generation_same_with_and_without_cache():
    torch.manual_seed(2)
    model = Transformer(tiny()).eval()
    prompt = [5, 9, 13]
    opts = dict(temperature=0.9, top_k=20, top_p=0.95, repetition_penalty=1.1, seed=7)
    with_cache = list(model.generate(prompt, 25, use_cache=True, **opts))
    without = list(model.generate(prompt, 25, use_cache=False, **opts))
    assert with_cache == without
    assert len(with_cache) == 25


def test_generation_refuses_prompt_longer_than_context():
    model = Transformer(tiny()).eval()
    with pytest.raises(ValueError, match="context"):
        list(model.generate(list(range(40)), 3))


def test_causal_model_ignores_the_future_and_full_attention_does_not():
    torch.manual_seed(3)
    a = torch.randint(0, 97, (1, 10))
    b = a.clone()
    b[0, -1] = (a[0, -1] + 1) % 97
    causal = Transformer(tiny()).eval()
    torch.testing.assert_close(causal(a)[0][:, :-1], causal(b)[0][:, :-1])
    full = Transformer(tiny(is_causal=False)).eval()
    assert not torch.allclose(full(a)[0][:, 0], full(b)[0][:, 0])
    assert full.predict_all(a).shape == (1, 10)


def test_loss_mask_weights_tokens():
    torch.manual_seed(4)
    model = Transformer(tiny())
    x = torch.randint(0, 97, (2, 8))
    y = torch.randint(0, 97, (2, 8))
    mask = torch.zeros(2, 8)
    mask[0, 3] = 1.0
    logits, loss = model(x, y, mask)
    ref = torch.nn.functional.cross_entropy(logits[0, 3:4], y[0, 3:4])
    torch.testing.assert_close(loss, ref)


def test_flops_formula_by_hand():
    cfg = ModelConfig(block_size=512, vocab_size=16384, n_layer=16, n_embd=512, n_head=16, n_kv_head=8,
                      n_hidden=1408)
    # per layer: wq 512*512, wk/wv 512*256 each, wo 512*512, FFN 3*512*1408; head 16384*512
    weights = 16 * (512 * 512 * 2 + 512 * 256 * 2 + 3 * 512 * 1408) + 16384 * 512
    attention = 2 * 16 * 512 * 512  # per token: QK^T and AV over 512 keys, 512 = n_head*head_dim
    assert flops_per_token(cfg) == 6 * weights + 6 * attention
    # the weights counted above are all parameters except the norms (the embedding is the head)
    small = ModelConfig(block_size=32, vocab_size=300, n_layer=3, n_embd=64, n_head=4, n_kv_head=2, n_hidden=176)
    small_weights = 3 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 176) + 300 * 64
    assert Transformer(small).num_params() - (3 * 2 * 64 + 64) == small_weights
    assert flops_per_token(small) == 6 * small_weights + 6 * 2 * 3 * 32 * 64


def test_base_hash_changes_with_weights_and_ignores_lora_keys():
    model = Transformer(tiny())
    sd = model.state_dict()
    h = base_hash(sd)
    assert len(h) == 16 and int(h, 16) >= 0
    sd2 = dict(sd)
    sd2["layers.0.attention.wq.lora_A"] = torch.ones(2, 32)
    assert base_hash(sd2) == h
    with torch.no_grad():
        model.norm.weight[0] += 1
    assert base_hash(model.state_dict()) != h
