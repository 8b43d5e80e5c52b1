"""Distributed: a real 2-process torchrun (gloo on CPU) equals a 1-process run with the same global batch."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import subprocess_env
from nano.train.metrics import read_metrics

REPO = Path(__file__).resolve().parent.parent
MODEL = dict(block_size=16, vocab_size=64, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, n_hidden=64,
             dropout=0.0)
STEPS, LR = 4, 1e-2


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
               gradient_accumulation_steps=2, max_iters=STEPS, learning_rate=LR, warmup_iters=0,
               eval_interval=2, eval_iters=2, log_interval=1, progress=False, tensorboard=False,
               dtype="float32", device="cpu", shuffle="epoch", random_seed=1)
    cfg.update(extra)
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


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "last.pt", weights_only=False)["model"]


def rms_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    d = torch.cat([(a[k].double() - b[k].double()).flatten() for k in a])
    return float(d.pow(2).mean().sqrt())


def loss_diff(a: list, b: list) -> float:
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, STEPS + 1))
    return max(abs(la - lb) for (_, la), (_, lb) in zip(a, b, strict=True))


@dataclass
class Reference:
    """The one-process run, and how far summing the same rows in another order moves its results.

    Distributed training computes exactly the one-process sums, only added up in another order: each rank
    adds its own rows' gradient terms, then the all-reduce adds the ranks' partial sums (dividing by a
    world size of 2 is exact). Float32 addition is not associative, so the results differ by rounding, and
    Adam, which divides each update by the root of its own running square, carries a rounding difference
    forward at up to the size of an update instead of damping it. No bound from the unit roundoff alone is
    tight enough to be useful, so the size of reordering is measured here, on this torch and CPU: two more
    one-process runs sum the same global batch of 8 rows per step in other orders (4 micro-batches of 2
    rows, 1 of 8, instead of 2 of 4). Their distance from the reference is what reordering alone does.
    """

    tmp: Path
    out: Path
    losses: list
    weights: dict
    weight_scale: float  # largest RMS weight difference of a reordered run from the reference
    loss_scale: float  # largest loss difference at any step, at least one float32 spacing of the loss

    def assert_matches(self, out: Path) -> None:
        """`out` trained the same model on the same rows, up to the order of its sums.

        An RMS over all weights of differences of one kind (rounding of the same sums) varies little from
        one reordering to another, so a factor 2 above the largest measured one is margin, not luck; and
        a real difference in the computation (a row lost or counted twice, a rank's weights out of sync)
        changes some weight by a good part of an Adam step (lr), which even alone among these thousands
        of weights is orders of magnitude above this bound.
        The loss is compared at four steps only, so its factor is 4.
        """
        assert rms_diff(weights(out), self.weights) <= 2 * self.weight_scale
        assert loss_diff(train_losses(out), self.losses) <= 4 * self.loss_scale


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Reference:
    tmp = tmp_path_factory.mktemp("ddp")
    write_dataset(tmp / "data")
    one = launch(tmp, "single", 1, batch_size=4)
    ref_w, ref_l = weights(one), train_losses(one)
    reordered = [launch(tmp, "reorder_4x2", 1, batch_size=2, gradient_accumulation_steps=4),
                 launch(tmp, "reorder_1x8", 1, batch_size=8, gradient_accumulation_steps=1)]
    weight_scale = max(rms_diff(weights(r), ref_w) for r in reordered)
    spacing = max(float(np.spacing(np.float32(loss))) for _, loss in ref_l)
    loss_scale = max([spacing] + [loss_diff(train_losses(r), ref_l) for r in reordered])
    # The reordered runs are the same computation: rounding moved their weights far less than one Adam
    # step would (a run on other rows would differ by a good part of lr).
    assert 0 < weight_scale < LR * 1e-3, weight_scale
    return Reference(tmp, one, ref_l, ref_w, weight_scale, loss_scale)


def test_two_process_gloo_ddp_matches_one_process(single):
    two = launch(single.tmp, "ddp", 2, batch_size=2)  # 2 ranks x 2 rows = the single run's 4 rows per micro-step
    ckpt = torch.load(two / "last.pt", weights_only=False)
    assert ckpt["world_size"] == 2 and len(ckpt["loader_states"]) == 2
    single.assert_matches(two)


def test_fsdp2_smoke_on_gloo(single):
    pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 needs torch >= 2.6")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("FSDP2 (fully_shard) needs torch >= 2.6")
    out = launch(single.tmp, "fsdp", 2, batch_size=2, fsdp=True)
    # The checkpoint holds full (gathered) tensors under the plain names.
    assert set(weights(out)) == set(single.weights)
    single.assert_matches(out)


def test_the_bound_tells_a_slightly_different_run_apart(single):
    # A learning rate 0.1 % off changes every update by that much: far less than a lost row would.
    other = launch(single.tmp, "lr_off", 1, batch_size=4, learning_rate=LR * 1.001)
    with pytest.raises(AssertionError):
        single.assert_matches(other)


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp2"])
def test_torchrun_of_one_process_still_runs_the_distributed_path(single, fsdp):
    """torchrun --nproc_per_node 1 joins a process group of one and wraps the model (DDP or FSDP2), as on
    several devices; the result equals the plain single-process run."""
    if fsdp:
        from torch.distributed import fsdp as fsdp_mod

        if not hasattr(fsdp_mod, "fully_shard"):
            pytest.skip("FSDP2 (fully_shard) needs torch >= 2.6")
    name = "torchrun1_fsdp" if fsdp else "torchrun1_ddp"
    out = launch(single.tmp, name, 1, batch_size=4, torchrun=True, fsdp=fsdp)
    assert f"{'FSDP2' if fsdp else 'DDP'} over 1 rank (gloo)" in (out / "stderr.txt").read_text()
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["world_size"] == 1 and len(ckpt["loader_states"]) == 1
    single.assert_matches(out)


def test_plain_process_reports_single_process(tmp_path, capsys):
    from nano.train import run

    write_dataset(tmp_path / "data")
    cfg = dict(train_data=str(tmp_path / "data"), save_checkpoint_to=str(tmp_path / "run"), batch_size=2,
               max_iters=1, eval_interval=1, eval_iters=1, progress=False, tensorboard=False, dtype="float32",
               device="cpu")
    run(MODEL, cfg, log=True)
    assert "0.02M parameters on cpu, float32, single process" in capsys.readouterr().err
