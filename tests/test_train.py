"""Trainer: overfitting, determinism, exact resume in a new process, loss normalisation, SFT masks, errors."""

import json
import math
import subprocess
import sys
from pathlib import Path

import helpers
import numpy as np
import pytest
import torch
from conftest import subprocess_env
from helpers import FixedLoader
from nano.model import ModelConfig, Transformer
from nano.train import run
from nano.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parent.parent
MODEL = dict(block_size=16, vocab_size=64, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, n_hidden=64,
             dropout=0.0)


def write_dataset(path: Path, n_tokens=2000, vocab=64, kind="pretrain", seed=0, mask=None, block=None,
                  tokenizer=None):
    """A prepared dataset of a learnable stream (mostly "next = previous + 1 mod vocab", some noise); the
    validation split is the stream's first quarter."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.integers(1, 3, n_tokens)) % vocab
    val = base[: n_tokens // 4]
    masks = None
    if kind == "sft":
        m = mask if mask is not None else np.ones(n_tokens, dtype=np.uint8)
        masks = {"train": m[:n_tokens], "val": m[: len(val)]}
    return helpers.write_dataset(path, base, val, kind=kind, masks=masks, block_size=block,
                                 tokenizer=tokenizer or helpers.filler_tokenizer(vocab))


def train_cfg(tmp: Path, data: Path, **kw):
    cfg = dict(train_data=str(data), save_checkpoint_to=str(tmp / "run"), batch_size=4, max_iters=6,
               learning_rate=3e-3, warmup_iters=2, min_lr=3e-4, eval_interval=3, eval_iters=2, log_interval=1,
               progress=False, tensorboard=False, dtype="float32", device="cpu", random_seed=3)
    cfg.update(kw)
    return cfg


def losses(path, split="train"):
    return [(r["step"], r["loss"]) for r in read_metrics(path) if r["split"] == split]


def test_overfits_one_batch(tmp_path):
    torch.manual_seed(0)
    x = torch.randint(0, 64, (4, 16))
    y = torch.randint(0, 64, (4, 16))
    loader = FixedLoader(x, y, torch.ones(4, 16), 4)
    cfg = train_cfg(tmp_path, tmp_path, train_data=None, max_iters=40, learning_rate=2e-2, warmup_iters=0,
                    decay_lr=False, weight_decay=0.0, eval_interval=1000, save_interval=1000)
    result = run(MODEL, cfg, train_loader=loader, log=False)
    first = losses(result["metrics_log"])[0][1]
    assert abs(first - math.log(64)) < 0.15
    assert result["train_loss"] < 0.3


def test_same_seed_is_bitwise_identical(tmp_path):
    data = write_dataset(tmp_path / "data")
    m = dict(MODEL, dropout=0.1)
    a = run(m, train_cfg(tmp_path / "a", data), log=False)
    b = run(m, train_cfg(tmp_path / "b", data), log=False)
    assert losses(a["metrics_log"]) == losses(b["metrics_log"])
    for (k, va), vb in zip(a["model"].state_dict().items(), b["model"].state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    c = run(m, train_cfg(tmp_path / "c", data, random_seed=4), log=False)
    assert losses(c["metrics_log"]) != losses(a["metrics_log"])


def test_resume_in_a_new_process_continues_exactly(tmp_path):
    data = write_dataset(tmp_path / "data")
    m = dict(MODEL, dropout=0.1)
    full = run(m, train_cfg(tmp_path / "full", data, max_iters=8, save_interval=4), log=False)
    # the schedule must not depend on where the first process stopped
    part = train_cfg(tmp_path / "part", data, max_iters=8, save_interval=4, lr_decay_iters=8)
    run(m, dict(part, max_iters=4), log=False)  # "interrupted" after step 4
    (tmp_path / "m.json").write_text(json.dumps(m))
    (tmp_path / "t.json").write_text(json.dumps(part))
    env = subprocess_env(OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "nano.train", "-m", str(tmp_path / "m.json"), "-t",
                           str(tmp_path / "t.json"), "--resume"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    resumed = losses(tmp_path / "part" / "run" / "metrics.jsonl")
    assert resumed == losses(full["metrics_log"])  # steps 1-4 from the first process, 5-8 resumed
    ckpt = torch.load(tmp_path / "part" / "run" / "last.pt", weights_only=False)
    assert ckpt["step"] == 8
    for k, v in full["model"].state_dict().items():
        assert torch.equal(ckpt["model"][k], v), k


def variable_sft_rows():
    """Four rows whose loss masks train very different numbers of tokens (like packed SFT samples)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 64, (4, 16), generator=g)
    y = torch.randint(0, 64, (4, 16), generator=g)
    mask = torch.zeros(4, 16)
    for row, (start, end) in enumerate([(2, 16), (10, 12), (5, 6), (0, 9)]):
        mask[row, start:end] = 1.0
    return x, y, mask


@pytest.mark.parametrize("batch,accum", [(4, 1), (2, 2), (1, 4)])
def test_gradient_accumulation_normalises_by_trained_tokens(tmp_path, batch, accum):
    x, y, mask = variable_sft_rows()
    torch.manual_seed(3)
    ref_model = Transformer(ModelConfig(**MODEL))
    logits, _ = ref_model(x, y)
    # independent reference: mean cross-entropy over all trained tokens of the whole global batch
    ce = torch.nn.functional.cross_entropy(logits.view(-1, 64), y.view(-1), reduction="none")
    ref_loss = (ce * mask.view(-1)).sum() / mask.sum()
    ref_loss.backward()
    ref_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in ref_model.parameters()))
    cfg = train_cfg(tmp_path, tmp_path, train_data=None, max_iters=1, batch_size=batch,
                    gradient_accumulation_steps=accum, eval_interval=1000, random_seed=3)
    result = run(MODEL, cfg, train_loader=FixedLoader(x, y, mask, batch), log=False)
    rec = read_metrics(result["metrics_log"])[0]
    assert rec["loss"] == pytest.approx(ref_loss.item(), rel=1e-5)
    assert rec["grad_norm"] == pytest.approx(ref_norm.item(), rel=1e-4)


def test_sft_mask_zero_gradient_on_prompt_and_first_answer_token_trained():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**MODEL))
    x = torch.randint(0, 64, (1, 16))
    y = torch.randint(0, 64, (1, 16))
    mask = torch.zeros(1, 16)
    mask[0, 6:] = 1.0  # positions 0-5 predict prompt tokens; position 6 predicts the first answer token
    logits, _ = model(x)
    logits.retain_grad()
    from nano.model import token_loss

    token_loss(logits, y, mask).backward()
    per_pos = logits.grad[0].abs().sum(-1)
    assert torch.all(per_pos[:6] == 0)
    assert torch.all(per_pos[6:] > 0)


def test_sft_data_pipeline_trains_first_answer_token(tmp_path, shared_data):
    tok_mod = pytest.importorskip("nano.tokenizer")
    data_mod = pytest.importorskip("nano.data")
    tok = tok_mod.Tokenizer.from_file(str(shared_data / "tokenizer_16384.json"))
    data_mod.prepare_sft([str(shared_data / "sft_self_id.jsonl")], tmp_path / "sft", tok, block_size=64,
                         progress=False) if "progress" in data_mod.prepare_sft.__code__.co_varnames else \
        data_mod.prepare_sft([str(shared_data / "sft_self_id.jsonl")], tmp_path / "sft", tok, block_size=64)
    from nano.data.loader import BlockLoader

    x, y, mask = BlockLoader(tmp_path / "sft", "train", 64, 4, seed=0).next_batch()
    resp = tok.token_to_id("<|response_mark|>")
    for row in range(4):
        pos = int((x[row] == resp).nonzero()[0])  # input <|response_mark|> -> target: first answer token
        assert mask[row, pos] == 1.0
        assert torch.all(mask[row, :pos] == 0)


def test_lora_run_from_checkpoint_trains_adapters_only(tmp_path):
    data = write_dataset(tmp_path / "data")
    base = run(MODEL, train_cfg(tmp_path / "base", data, max_iters=2), log=False)
    lora = run(None, train_cfg(tmp_path / "lora", data, max_iters=3, from_checkpoint=base["checkpoint"],
                               use_lora=True, lora_rank=2, lora_alpha=4, learning_rate=1e-2), log=False)
    assert lora["step"] == 3  # a new run: fresh step counter
    base_sd = base["model"].state_dict()
    for k, v in lora["model"].state_dict().items():
        if ".lora_" not in k:
            assert torch.equal(v, base_sd[k]), k
    saved = torch.load(lora["lora"], weights_only=True)
    assert saved["format"] == "nano-lora" and saved["lora_config"]["rank"] == 2
    assert any(v.abs().sum() > 0 for k, v in saved["state_dict"].items() if k.endswith("lora_B"))


def test_metrics_log_fields_and_no_mfu_on_cpu(tmp_path):
    data = write_dataset(tmp_path / "data")
    result = run(MODEL, train_cfg(tmp_path, data, max_iters=3), log=False)
    rec = read_metrics(result["metrics_log"])
    train = [r for r in rec if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "flops_per_s"} <= set(train[0])
    assert "mfu" not in train[0]
    assert [r["step"] for r in rec if r["split"] == "val"] == [3]
    ckpt = torch.load(result["checkpoint"], weights_only=False)
    assert ckpt["format"] == "nano-checkpoint" and ckpt["tokenizer_hash"] == helpers.filler_tokenizer(64).hash
    assert (tmp_path / "run" / "best.pt").exists()


def test_vocab_size_mismatch_between_data_and_model_is_clear(tmp_path):
    data = write_dataset(tmp_path / "data", vocab=64)
    with pytest.raises(ValueError, match="vocabulary size mismatch.*64.*100"):
        run(dict(MODEL, vocab_size=100), train_cfg(tmp_path, data), log=False)


def test_tokenizer_mismatch_between_checkpoint_and_data_is_clear(tmp_path):
    data = write_dataset(tmp_path / "data")
    base = run(MODEL, train_cfg(tmp_path / "a", data, max_iters=1), log=False)
    other = write_dataset(tmp_path / "other", tokenizer=helpers.filler_tokenizer(64, tag="other"))
    with pytest.raises(ValueError, match="tokenizer mismatch"):
        run(None, train_cfg(tmp_path / "b", other, from_checkpoint=base["checkpoint"]), log=False)
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        run(dict(MODEL, n_layer=3), train_cfg(tmp_path / "c", data, from_checkpoint=base["checkpoint"]),
            log=False)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    from nano.train.__main__ import main

    (tmp_path / "t.json").write_text(json.dumps({"train_data": str(tmp_path / "missing")}))
    (tmp_path / "m.json").write_text(json.dumps(MODEL))
    assert main(["-m", str(tmp_path / "m.json"), "-t", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert f"train_data {tmp_path / 'missing'} does not exist" in err and "Traceback" not in err
    (tmp_path / "missing").mkdir()  # a directory that is not a prepared dataset
    assert main(["-m", str(tmp_path / "m.json"), "-t", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert "meta.json missing" in err and "Traceback" not in err
    assert main(["-m", str(tmp_path / "m.json"), "-t", str(tmp_path / "t.json"), "--set", "oops"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_time_limit_stops_early_and_still_saves(tmp_path):
    data = write_dataset(tmp_path / "data")
    result = run(MODEL, train_cfg(tmp_path, data, max_iters=1000, time_limit=1e-9), log=False)
    assert result["step"] == 1
    assert torch.load(result["checkpoint"], weights_only=False)["step"] == 1
    assert result["val_loss"] is not None


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_paths_train_on_cpu(tmp_path, dtype):
    data = write_dataset(tmp_path / "data")
    result = run(MODEL, train_cfg(tmp_path, data, max_iters=3, dtype=dtype, grad_clip=0.5), log=False)
    ckpt = torch.load(result["checkpoint"], weights_only=False)
    # the GradScaler is used for float16 only (bf16 has f32's exponent range)
    assert bool(ckpt["scaler"]) == (dtype == "float16")
    assert math.isfinite(result["train_loss"])


def test_keep_last_and_periodic_samples(tmp_path, capsys):
    tok_mod = pytest.importorskip("nano.tokenizer")
    tok = tok_mod.Tokenizer.from_file(str(REPO / "python" / "nano" / "corpus" / "chinese_classic_vocab.json"))
    data = write_dataset(tmp_path / "data", vocab=tok.vocab_size, tokenizer=tok)
    cfg = train_cfg(tmp_path, data, max_iters=4, save_interval=1, keep_last=2, sample_interval=2,
                    sample_prompt="天", sample_tokens=3, eval_interval=1000)
    run(dict(MODEL, vocab_size=tok.vocab_size), cfg, tokenizer=tok, log=True)
    names = sorted(p.name for p in (tmp_path / "run").glob("ckpt_*.pt"))
    assert names == ["ckpt_0000003.pt", "ckpt_0000004.pt"]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["step"] == 4
    err = capsys.readouterr().err
    assert "sample @ 2: 天" in err and "sample @ 4: 天" in err


def test_original_config_pretrain_keys_are_accepted(tmp_path):
    from nano.train.config import normalise

    data = write_dataset(tmp_path / "data")
    original = {"use_lora": False, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "from_checkpoint": "",
                "save_checkpoint_to": str(tmp_path / "ck"), "dataset_path": [[str(data), str(data)]],
                "random_seed": 39, "batch_size": 4, "gradient_accumulation_steps": 1, "grad_clip": 1.0,
                "dropout": 0.0, "learning_rate": 5e-4, "weight_decay": 1e-1, "beta1": 0.9, "beta2": 0.95,
                "decay_lr": True, "warmup_iters": 500, "lr_decay_iters": 1e9, "min_lr": 6e-5,
                "eval_interval": 100, "log_interval": 10, "eval_iters": 5, "backend": "nccl", "device": "cpu",
                "sdp_kernel": "flash", "dtype": "float32", "use_amp": True}
    cfg = normalise(original)
    assert cfg["train_data"] == cfg["val_data"] == str(data) and cfg["random_seed"] == 39
    result = run(MODEL, dict(original, max_iters=2, progress=False, tensorboard=False), log=False)
    assert result["step"] == 2
    with pytest.raises(ValueError, match="one prepared dataset"):
        normalise({"dataset_path": [["a", "b"], ["c", "d"]]})


def test_full_sft_from_checkpoint_is_a_new_run_on_its_weights(tmp_path):
    data = write_dataset(tmp_path / "data")
    base = run(MODEL, train_cfg(tmp_path / "base", data, max_iters=3), log=False)
    # learning rate 0: the weights stay the checkpoint's, which proves they were loaded (not re-initialised)
    sft = run(None, train_cfg(tmp_path / "sft", data, max_iters=2, from_checkpoint=base["checkpoint"],
                              learning_rate=0.0, min_lr=0.0, weight_decay=0.0), log=False)
    assert sft["step"] == 2
    ckpt = torch.load(sft["checkpoint"], weights_only=False)
    assert ckpt["step"] == 2 and len(ckpt["optimizer"]["state"]) > 0
    for k, v in base["model"].state_dict().items():
        assert torch.equal(sft["model"].state_dict()[k], v), k


def test_lr_schedule_warmup_cosine_floor():
    from nano.train.runtime import lr_at

    cfg = dict(learning_rate=1.0, min_lr=0.1, decay_lr=True, warmup_iters=4, lr_decay_iters=14)
    assert [lr_at(i, cfg) for i in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lr_at(4, cfg) == pytest.approx(1.0)
    assert lr_at(9, cfg) == pytest.approx(0.55)  # halfway through the cosine: (1 + 0.1) / 2
    assert lr_at(14, cfg) == lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(50, dict(cfg, decay_lr=False)) == 1.0


def test_tensorboard_events_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    data = write_dataset(tmp_path / "data")
    run(MODEL, train_cfg(tmp_path, data, max_iters=2, tensorboard=True), log=False)
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
