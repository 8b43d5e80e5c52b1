"""Toy problems end to end: --quick presets learn reverse and q; a seed reproduces a run exactly."""

import json

import pytest
import torch
from nano.problem import solve
from nano.problem.__main__ import main


@pytest.mark.parametrize("task", ["reverse", "q"])
def test_quick_preset_learns(task, tmp_path):
    report = solve(task, quick=True, seed=0, eval_samples=2000, out_dir=tmp_path, log=False, threads=1)
    assert report["formulation"] == ("nar" if task == "reverse" else "causal")
    assert report["accuracy"] >= 0.95, report["summary"]
    assert report["accuracy"] > report["majority_baseline"] + 0.5


def _tiny(tmp_path, seed):
    return solve("bool", seed=seed, eval_samples=200, out_dir=tmp_path / str(seed), log=False, threads=1,
                 task_params={"depth": 2}, steps=12, batch_size=16, n_layer=1, n_embd=32, n_hidden=64)


def test_same_seed_same_run(tmp_path):
    a, b = _tiny(tmp_path / "a", 3), _tiny(tmp_path / "b", 3)
    for key in ("accuracy", "final_train_loss", "final_val_loss", "examples"):
        assert a[key] == b[key]
    sa, sb = a["model"].state_dict(), b["model"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = _tiny(tmp_path / "c", 4)
    assert not torch.equal(c["model"].state_dict()["norm.weight"], sa["norm.weight"])


def test_cli_writes_report_and_plot(tmp_path, capsys):
    report, plot = tmp_path / "r.json", tmp_path / "curve.png"
    rc = main(["sort", "--steps", "6", "--batch-size", "8", "--n-layer", "1", "--n-embd", "32", "--n-hidden", "64",
               "--eval-samples", "50", "--quiet", "--out", str(tmp_path / "run"), "--report", str(report),
               "--plot", str(plot)])
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(report.read_text())
    assert line == data["summary"] and "accuracy" in line and "nar" in line
    assert data["steps"] == 6 and data["eval_samples"] == 50 and 0.0 <= data["accuracy"] <= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
