"""Rust engine vs PyTorch on a model trained by the project's own trainer (tiny, trained here):
logits at every position, greedy and sampled generations (PyTorch, nano.Engine, nano-infer), LoRA,
q8_0 quality, export round trips."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import torch_logits
from nano.engine import Engine
from nano.export import convert_bin, export_checkpoint, export_lora, load_bin
from nano.lora import load_lora, read_lora
from nano.model import Transformer, base_hash
from nano.tokenizer import Tokenizer
from nano.train import run
from test_cli import nano_infer_binary

torch.set_num_threads(2)
MODEL = dict(block_size=256, vocab_size=16384, n_layer=2, n_embd=64, n_head=4, n_kv_head=2, n_hidden=128,
             dropout=0.0)
PROMPTS = ["人的心理", "情绪是什么？", "The mind and", "我们"]


class TextBlocks:
    """Random windows of a token stream (a loader for nano.train.run)."""

    def __init__(self, ids, block, batch, seed):
        self.ids, self.block, self.batch = torch.as_tensor(ids, dtype=torch.long), block, batch
        self.gen = torch.Generator().manual_seed(seed)

    def next_batch(self):
        starts = torch.randint(0, len(self.ids) - self.block - 1, (self.batch,), generator=self.gen)
        rows = torch.stack([self.ids[s:s + self.block + 1] for s in starts.tolist()])
        return rows[:, :-1], rows[:, 1:], torch.ones(self.batch, self.block)

    def state_dict(self):
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, d):
        self.gen.set_state(d["rng"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("engine")
    tok = Tokenizer.from_file(shared_data / "tokenizer_16384.json")
    text = (shared_data / "pretrain_psycho.txt").read_text(encoding="utf-8")[:150_000]
    ids = np.array(tok.encode(text))
    cut = int(len(ids) * 0.9)
    train, held_out = ids[:cut], ids[cut:]
    cfg = dict(save_checkpoint_to=str(tmp / "base"), batch_size=8, max_iters=30, learning_rate=4e-3,
               warmup_iters=4, min_lr=4e-4, eval_interval=1000, eval_iters=1, log_interval=1000, progress=False,
               tensorboard=False, dtype="float32", device="cpu", random_seed=1)
    base = run(MODEL, cfg, train_loader=TextBlocks(train, 64, 8, 0), val_loader=TextBlocks(held_out, 64, 2, 1),
               tokenizer=tok, log=False)
    lora_cfg = dict(cfg, save_checkpoint_to=str(tmp / "lora"), from_checkpoint=base["checkpoint"], use_lora=True,
                    lora_rank=4, lora_alpha=8.0, max_iters=10, learning_rate=2e-2,
                    lora_targets=["wq", "wk", "wv", "wo", "w1", "w2", "w3"])
    lora = run(None, lora_cfg, train_loader=TextBlocks(train[::-1].copy(), 64, 8, 2),
               val_loader=TextBlocks(held_out, 64, 2, 1), tokenizer=tok, log=False)
    ckpt = torch.load(base["checkpoint"], map_location="cpu", weights_only=False)
    model = Transformer(ckpt["model_config"]).eval()
    model.load_state_dict(ckpt["model"])
    lora_model = Transformer(ckpt["model_config"]).eval()
    lora_model.load_state_dict(ckpt["model"])
    load_lora(lora_model, lora["lora"])
    files = {
        "f32": export_checkpoint(base["checkpoint"], tmp / "m_f32.bin"),
        "q8_0": export_checkpoint(base["checkpoint"], tmp / "m_q8.bin", "q8_0"),
        "legacy": export_checkpoint(base["checkpoint"], tmp / "m_legacy.bin", legacy=True),
        "lora": export_lora(lora["lora"], tmp / "lora.bin"),
    }
    return dict(tok=tok, model=model, lora_model=lora_model, files=files, held_out=held_out, tmp=tmp,
                ckpt_path=base["checkpoint"], lora_path=lora["lora"])


def torch_text(model, tok, prompt, n, **sampling):
    ids = list(model.generate(tok.encode(prompt), n, eos_id=tok.token_to_id("<|eos|>"), **sampling))
    dec = tok.stream_decoder(skip_special=True)
    return "".join(dec.push(i) for i in ids), ids


def test_f32_logits_match_pytorch_at_every_position(trained):
    tok, model = trained["tok"], trained["model"]
    eng = Engine(trained["files"]["f32"])
    texts = PROMPTS + [tok.decode(trained["held_out"][:200].tolist())]
    for text in texts:
        ids = tok.encode(text)
        got, want = eng.logits(ids), torch_logits(model, ids)
        assert got.shape == (len(ids), 16384) and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-4, text
    # the trained model is far from uniform, so this comparison has teeth
    assert np.abs(want).max() > 1.0


def test_greedy_200_tokens_identical_in_pytorch_engine_and_cli(trained):
    tok, model = trained["tok"], trained["model"]
    eng = Engine(trained["files"]["f32"], threads=2)
    exe = nano_infer_binary()
    for prompt in PROMPTS[:2]:
        want, ids = torch_text(model, tok, prompt, 200, temperature=0)
        assert len(ids) == 200  # eos never came: the full length is compared
        gen = eng.generate(prompt, max_new_tokens=200, temperature=0)
        assert "".join(gen) == want
        assert gen.stats["generated_tokens"] == 200
        cli = subprocess.run([str(exe), str(trained["files"]["f32"]), "--prompt", prompt, "-n", "200", "-t", "0"],
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout == want + "\n"


def test_sampled_generation_identical_with_the_same_seed(trained):
    tok, model = trained["tok"], trained["model"]
    eng = Engine(trained["files"]["f32"])
    opts = dict(temperature=0.9, top_k=50, top_p=0.9, repetition_penalty=1.2, seed=1234)
    for prompt in PROMPTS[:2]:
        want, _ = torch_text(model, tok, prompt, 60, **opts)
        got = "".join(eng.generate(prompt, max_new_tokens=60, **opts))
        assert got == want
    other = "".join(eng.generate(PROMPTS[0], max_new_tokens=60, **dict(opts, seed=99)))
    assert other != torch_text(model, tok, PROMPTS[0], 60, **opts)[0]


def test_f16_kv_cache_stays_close_to_the_f32_cache(trained):
    tok = trained["tok"]
    ids = tok.encode(tok.decode(trained["held_out"][:200].tolist()))
    full = Engine(trained["files"]["f32"]).logits(ids)
    got = Engine(trained["files"]["f32"], threads=2, kv_cache="f16").logits(ids)
    err = np.abs(got - full).max()
    # keys and values are rounded to half precision: close to the f32 cache's logits, yet not the same
    assert 0 < err < 1e-2 * np.abs(full).max(), err
    assert (got.argmax(-1) == full.argmax(-1)).mean() > 0.95
    with pytest.raises(ValueError, match="f32 or f16"):
        Engine(trained["files"]["f32"], kv_cache="bf16")
    exe = str(nano_infer_binary())
    cli = subprocess.run([exe, str(trained["files"]["q8_0"]), "--prompt", PROMPTS[0], "-n", "20", "-t", "0",
                          "--kv-cache", "f16"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and cli.stdout.strip(), cli.stderr
    bad = subprocess.run([exe, str(trained["files"]["q8_0"]), "--prompt", "x", "--kv-cache", "f8"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "f32 or f16" in bad.stderr


def test_lora_loaded_and_unloaded_at_run_time(trained):
    tok, base, adapted = trained["tok"], trained["model"], trained["lora_model"]
    eng = Engine(trained["files"]["f32"])
    ids = tok.encode(PROMPTS[0] + PROMPTS[1])
    plain = eng.logits(ids)
    eng.load_lora(trained["files"]["lora"])
    with_lora = eng.logits(ids)
    want = torch_logits(adapted, ids)
    assert np.abs(with_lora - want).max() < 1e-4
    assert np.abs(want - torch_logits(base, ids)).max() > 1e-2  # the adapter really changes the output
    text, _ = torch_text(adapted, tok, PROMPTS[0], 200, temperature=0)
    assert "".join(eng.generate(PROMPTS[0], max_new_tokens=200, temperature=0)) == text
    cli = subprocess.run([str(nano_infer_binary()), str(trained["files"]["f32"]), "-l", str(trained["files"]["lora"]),
                          "--prompt", PROMPTS[0], "-n", "200", "-t", "0"], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == text + "\n"
    eng.unload_lora()
    assert np.array_equal(eng.logits(ids), plain)


def test_lora_for_another_base_is_refused(trained, tmp_path):
    payload = dict(read_lora(trained["lora_path"]))
    payload["base_hash"] = "0123456789abcdef"
    bad = export_lora(payload, tmp_path / "other.bin")
    eng = Engine(trained["files"]["f32"])
    with pytest.raises(ValueError, match="another base"):
        eng.load_lora(bad)
    payload = dict(read_lora(trained["lora_path"]), model_config=dict(MODEL, n_hidden=96))
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if "feed_forward" not in k}
    payload["lora_config"] = dict(payload["lora_config"], targets=["wq", "wk", "wv", "wo"])
    with pytest.raises(ValueError, match="another base"):
        eng.load_lora(export_lora(payload, tmp_path / "shape.bin"))
    # still usable, still without an adapter
    ids = trained["tok"].encode(PROMPTS[0])
    assert np.abs(eng.logits(ids) - torch_logits(trained["model"], ids)).max() < 1e-4


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def test_q8_0_quality_against_f32(trained):
    f32, q8 = Engine(trained["files"]["f32"]), Engine(trained["files"]["q8_0"])
    held = trained["held_out"]
    nll = {"f32": [], "q8": []}
    agree = total = 0
    max_err = 0.0
    for start in range(0, 6 * 256, 256):
        window = held[start:start + 257].tolist()
        a, b = f32.logits(window[:-1]), q8.logits(window[:-1])
        max_err = max(max_err, float(np.abs(a - b).max()))
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += len(a)
        targets = np.array(window[1:])
        nll["f32"].extend(-log_softmax(a)[np.arange(256), targets])
        nll["q8"].extend(-log_softmax(b)[np.arange(256), targets])
    ppl = {k: math.exp(np.mean(v)) for k, v in nll.items()}
    rel = abs(ppl["q8"] / ppl["f32"] - 1)
    print(f"\nq8_0 vs f32 on {total} held-out tokens: greedy agreement {agree / total:.4f}, "
          f"max |logit error| {max_err:.5f}, perplexity {ppl['q8']:.3f} vs {ppl['f32']:.3f} ({rel:.4%})")
    assert rel < 0.005
    assert agree / total > 0.95
    tok = trained["tok"]
    g32 = "".join(f32.generate(PROMPTS[0], max_new_tokens=50, temperature=0))
    g8 = "".join(q8.generate(PROMPTS[0], max_new_tokens=50, temperature=0))
    common = next((i for i, (x, y) in enumerate(zip(g32, g8, strict=False)) if x != y), min(len(g32), len(g8)))
    print(f"greedy 50-token generation: first {common} characters agree ({len(tok.encode(g32[:common]))} tokens)")


def test_round_trips_checkpoint_bin_pytorch(trained, tmp_path):
    ckpt = torch.load(trained["ckpt_path"], map_location="cpu", weights_only=False)
    for kind in ("f32", "legacy"):
        back = load_bin(trained["files"][kind])
        for name, t in ckpt["model"].items():
            assert torch.equal(back.state_dict()[name], t), (kind, name)
        assert base_hash(back.state_dict()) == base_hash(ckpt["model"])
        assert Tokenizer.from_json(back.tokenizer_json).hash == ckpt["tokenizer_hash"]
    q = load_bin(trained["files"]["q8_0"]).state_dict()
    for name, t in ckpt["model"].items():
        step = t.abs().max() / 127
        assert (q[name] - t).abs().max() <= step / 2 + 1e-6, name
    assert Engine(trained["files"]["f32"]).base_hash == base_hash(ckpt["model"])


def test_from_bin_conversion_of_a_legacy_file(trained, tmp_path):
    out = tmp_path / "converted.bin"
    proc = subprocess.run([sys.executable, "-m", "nano.export", str(out), "--from-bin",
                           str(trained["files"]["legacy"])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ids = trained["tok"].encode(PROMPTS[1])
    assert np.array_equal(Engine(out).logits(ids), Engine(trained["files"]["f32"]).logits(ids))
    # the converted file names the same base: the LoRA plug-in loads on it
    Engine(out).load_lora(trained["files"]["lora"])
    q = convert_bin(trained["files"]["legacy"], tmp_path / "converted_q8.bin", "q8_0")
    assert q.read_bytes() == trained["files"]["q8_0"].read_bytes()


def test_export_cli_and_its_errors(trained, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "nano.export", str(tmp_path / "q.bin"), str(trained["ckpt_path"]),
                         "--quant", "q8_0"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "q.bin").read_bytes() == trained["files"]["q8_0"].read_bytes()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for args in (["--checkpoint", str(tmp_path / "junk.pt")], ["--from-bin", str(tmp_path / "junk.pt")],
                 ["--lora", str(trained["lora_path"]), "--quant", "q8_0"], []):
        bad = subprocess.run([sys.executable, "-m", "nano.export", str(tmp_path / "bad.bin"), *args],
                             capture_output=True, text=True)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr, bad.stderr
    assert not (tmp_path / "bad.bin").exists()


def test_generation_api_errors_and_early_stop(trained):
    eng = Engine(trained["files"]["f32"])
    with pytest.raises(ValueError, match="empty"):
        eng.generate("")
    with pytest.raises(ValueError, match="longer than the context"):
        eng.generate("心" * 300)
    with pytest.raises(ValueError, match="longer than the context"):
        eng.generate([5] * 257)
    with pytest.raises(ValueError, match="temperature"):
        eng.generate("心", temperature=-1)
    with pytest.raises(ValueError):
        eng.logits([16384])
    gen = eng.generate(PROMPTS[0], max_new_tokens=100, temperature=0)
    first = [next(gen) for _ in range(3)]
    gen.close()
    assert list(gen) == []
    again = list(eng.generate(PROMPTS[0], max_new_tokens=3, temperature=0))
    assert again == first  # the engine is free and reset after an early stop
    assert json.loads(json.dumps(eng.config))["block_size"] == 256
