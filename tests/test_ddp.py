"""Distributed: a real 2-process torchrun (gloo on CPU) equals a 1-process run with the same global batch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import subprocess_env
from nano.train.metrics import read_metrics

REPO = Path(__file__).resolve().parent.parent
MODEL = dict(block_size=16, vocab_size=64, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, n_hidden=64,
             dropout=0.0)


def write_dataset(path: Path, n_blocks=64, block=16, vocab=64):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_blocks * block + 1), ("val", 8 * block + 1)):
        (np.cumsum(rng.integers(1, 3, n)) % vocab).astype("<u2").tofile(path / f"{split}.tokens")
    meta = {"format": "nano-tokens", "version": 1, "kind": "pretrain", "dtype": "uint16", "vocab_size": vocab,
            "tokenizer_hash": "00c0ffee00c0ffee", "block_size": None,
            "splits": {"train": {"tokens": n_blocks * block + 1, "documents": 1},
                       "val": {"tokens": 8 * block + 1, "documents": 1}}}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def launch(tmp: Path, name: str, nproc: int, batch_size: int, torchrun: bool = False, **extra) -> Path:
    """Train with nproc torchrun workers (in this process when nproc is 1 and torchrun is False); the
    launcher's stderr is kept in <out>/stderr.txt."""
    out = tmp / name
    cfg = dict(train_data=str(tmp / "data"), save_checkpoint_to=str(out), batch_size=batch_size,
               gradient_accumulation_steps=2, max_iters=4, learning_rate=1e-2, warmup_iters=0,
               eval_interval=2, eval_iters=2, log_interval=1, progress=False, tensorboard=False,
               dtype="float32", device="cpu", shuffle="epoch", random_seed=1, **extra)
    (tmp / f"{name}.json").write_text(json.dumps(cfg))
    (tmp / "model.json").write_text(json.dumps(MODEL))
    env = subprocess_env(OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "nano.train", "-m", str(tmp / "model.json"), "-t", str(tmp / f"{name}.json")]
    if nproc == 1 and not torchrun:  # the reference runs in this process (saves an interpreter start)
        from nano.train import run

        run(MODEL, cfg, log=False)
        return out
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *cmd[1:]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "stderr.txt").write_text(proc.stderr)
    return out


def train_losses(out: Path):
    return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    write_dataset(tmp / "data")
    return tmp, launch(tmp, "single", 1, batch_size=4)


def test_two_process_gloo_ddp_matches_one_process(single):
    tmp, one = single
    two = launch(tmp, "ddp", 2, batch_size=2)  # 2 ranks x 2 rows = the single run's 4 rows per micro-step
    a, b = train_losses(one), train_losses(two)
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3, 4]
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert la == pytest.approx(lb, rel=1e-5)
    wa = torch.load(one / "last.pt", weights_only=False)
    wb = torch.load(two / "last.pt", weights_only=False)
    assert wb["world_size"] == 2 and len(wb["loader_states"]) == 2
    for k, v in wa["model"].items():
        torch.testing.assert_close(wb["model"][k], v, rtol=1e-4, atol=1e-5)


def test_fsdp2_smoke_on_gloo(single):
    pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 needs torch >= 2.6")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("FSDP2 (fully_shard) needs torch >= 2.6")
    tmp, one = single
    out = launch(tmp, "fsdp", 2, batch_size=2, fsdp=True)
    a, b = train_losses(one), train_losses(out)
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert la == pytest.approx(lb, rel=1e-4)
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert set(ckpt["model"]) == set(torch.load(one / "last.pt", weights_only=False)["model"])


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp2"])
def test_torchrun_of_one_process_still_runs_the_distributed_path(single, fsdp):
    """torchrun --nproc_per_node 1 joins a process group of one and wraps the model (DDP or FSDP2), as on
    several devices; the result equals the plain single-process run."""
    if fsdp:
        from torch.distributed import fsdp as fsdp_mod

        if not hasattr(fsdp_mod, "fully_shard"):
            pytest.skip("FSDP2 (fully_shard) needs torch >= 2.6")
    tmp, one = single
    out = launch(tmp, "torchrun1_fsdp" if fsdp else "torchrun1_ddp", 1, batch_size=4, torchrun=True, fsdp=fsdp)
    assert f"{'FSDP2' if fsdp else 'DDP'} over 1 rank (gloo)" in (out / "stderr.txt").read_text()
    a, b = train_losses(one), train_losses(out)
    assert [s for s, _ in a] == [s for s, _ in b]
    for (_, la), (_, lb) in zip(a, b, strict=True):
        assert la == pytest.approx(lb, rel=1e-5)
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["world_size"] == 1 and len(ckpt["loader_states"]) == 1
    for k, v in torch.load(one / "last.pt", weights_only=False)["model"].items():
        torch.testing.assert_close(ckpt["model"][k], v, rtol=1e-4, atol=1e-5)


def test_plain_process_reports_single_process(tmp_path, capsys):
    from nano.train import run

    write_dataset(tmp_path / "data")
    cfg = dict(train_data=str(tmp_path / "data"), save_checkpoint_to=str(tmp_path / "run"), batch_size=2,
               max_iters=1, eval_interval=1, eval_iters=1, progress=False, tensorboard=False, dtype="float32",
               device="cpu")
    run(MODEL, cfg, log=True)
    assert "0.02M parameters on cpu, float32, single process" in capsys.readouterr().err
