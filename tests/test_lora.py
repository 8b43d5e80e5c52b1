"""LoRA: identity at init, only adapters train, merge/unmerge, adapter-only round trip, wrong base refused."""

import pytest
import torch
from nano.lora import (
    LoraConfig,
    apply_lora,
    base_state_dict,
    load_lora,
    lora_modules,
    merge_lora,
    save_lora,
    set_lora_enabled,
    unmerge_lora,
)
from nano.model import ModelConfig, Transformer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CFG = ModelConfig(block_size=16, vocab_size=61, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, n_hidden=48)


def make(seed=0, targets=("wq", "wk", "wv", "wo")):
    torch.manual_seed(seed)
    base = Transformer(CFG).eval()
    adapted = Transformer(CFG).eval()
    adapted.load_state_dict(base.state_dict())
    apply_lora(adapted, LoraConfig(rank=4, alpha=8, targets=list(targets)))
    return base, adapted


def randomise_adapters(model):
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.normal_(0, 0.1)


X = torch.randint(0, 61, (2, 12))


def test_identity_at_init_and_names():
    base, adapted = make()
    torch.testing.assert_close(adapted(X)[0], base(X)[0])
    names = [k for k in adapted.state_dict() if ".lora_" in k]
    assert "layers.0.attention.wq.lora_A" in names and "layers.1.attention.wo.lora_B" in names
    assert adapted.state_dict()["layers.0.attention.wk.lora_A"].shape == (4, 32)
    assert adapted.state_dict()["layers.0.attention.wk.lora_B"].shape == (16, 4)


def test_only_adapters_change_during_training():
    _, model = make(targets=("wq", "wk", "wv", "wo", "w1", "w2", "w3"))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    y = torch.randint(0, 61, (2, 12))
    for _ in range(3):
        _, loss = model(X, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == (".lora_" in k), k


def test_merge_equals_unmerged_and_is_idempotent():
    base, model = make()
    randomise_adapters(model)
    unmerged = model(X)[0]
    assert not torch.allclose(unmerged, base(X)[0])
    merge_lora(model)
    once = model(X)[0]
    torch.testing.assert_close(once, unmerged, atol=1e-5, rtol=1e-5)
    merge_lora(model)
    torch.testing.assert_close(model(X)[0], once)
    unmerge_lora(model)
    unmerge_lora(model)
    torch.testing.assert_close(base_state_dict(model)["layers.0.attention.wq.weight"],
                               base.state_dict()["layers.0.attention.wq.weight"], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(X)[0], unmerged, atol=1e-5, rtol=1e-5)


def test_disable_gives_base_output():
    base, model = make()
    randomise_adapters(model)
    merge_lora(model)
    set_lora_enabled(model, False)
    torch.testing.assert_close(model(X)[0], base(X)[0], atol=1e-5, rtol=1e-5)
    set_lora_enabled(model, True)
    assert not torch.allclose(model(X)[0], base(X)[0])


def test_adapter_only_round_trip(tmp_path):
    base, model = make()
    randomise_adapters(model)
    path = save_lora(model, tmp_path / "a.pt")
    saved = torch.load(path, weights_only=True)
    assert saved["format"] == "nano-lora" and all(".lora_" in k for k in saved["state_dict"])
    fresh = Transformer(CFG).eval()
    fresh.load_state_dict(base.state_dict())
    load_lora(fresh, path)
    torch.testing.assert_close(fresh(X)[0], model(X)[0])


def test_wrong_base_is_refused(tmp_path):
    _, model = make(seed=0)
    path = save_lora(model, tmp_path / "a.pt")
    torch.manual_seed(1)
    other = Transformer(CFG)
    with pytest.raises(ValueError, match="belongs to base"):
        load_lora(other, path)
    wider = Transformer(ModelConfig(**{**CFG.to_dict(), "n_hidden": 64}))
    with pytest.raises(ValueError, match="different model shape"):
        load_lora(wider, path)


def test_junk_file_is_a_clear_error(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"junk")
    _, model = make()
    with pytest.raises(ValueError, match="not a readable LoRA file"):
        load_lora(model, tmp_path / "x.pt")
