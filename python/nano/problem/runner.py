"""Train a small Transformer on a toy task with nano.train.run and measure exact-match accuracy."""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import torch

from nano._atomic import atomic_write, atomic_write_text
from nano.problem.encoding import ProblemLoader, Vocab, block_size, check_formulation, predict
from nano.problem.tasks import Task, draw, make_task

# Per task: formulation, model shape and training length. "full" presets are the documented experiments
# (docs/problems.md); "quick" presets finish in about a minute on a laptop CPU.
PRESETS: dict[str, dict[str, dict]] = {
    "q": {
        "full": {"formulation": "causal", "model": (2, 64, 4, 256), "steps": 2000, "batch_size": 128, "lr": 2e-3},
        "quick": {"formulation": "causal", "model": (2, 64, 4, 256), "steps": 800, "batch_size": 64, "lr": 3e-3},
    },
    "sort": {
        "full": {"formulation": "nar", "model": (2, 64, 4, 256), "steps": 2000, "batch_size": 128, "lr": 2e-3},
        "quick": {"formulation": "nar", "model": (2, 64, 4, 256), "steps": 800, "batch_size": 64, "lr": 3e-3},
    },
    "reverse": {
        "full": {"formulation": "nar", "model": (2, 64, 4, 256), "steps": 1000, "batch_size": 128, "lr": 3e-3},
        "quick": {"formulation": "nar", "model": (2, 64, 4, 256), "steps": 500, "batch_size": 64, "lr": 3e-3},
    },
    "bool": {
        "full": {"formulation": "causal", "model": (4, 64, 4, 256), "steps": 3000, "batch_size": 64, "lr": 2e-3,
                 "intermediate": True},
        "quick": {"formulation": "causal", "model": (2, 64, 4, 256), "steps": 800, "batch_size": 64, "lr": 3e-3},
    },
    "add": {
        "full": {"formulation": "nar", "model": (2, 64, 4, 256), "steps": 1500, "batch_size": 128, "lr": 2e-3},
        "quick": {"formulation": "nar", "model": (2, 64, 4, 256), "steps": 800, "batch_size": 64, "lr": 3e-3},
    },
}


def settings(task_name: str, quick: bool = False, **overrides) -> dict:
    """The preset for a task with the given overrides (None values keep the preset)."""
    if task_name not in PRESETS:
        raise ValueError(f"unknown task {task_name!r}; choose one of {', '.join(PRESETS)}")
    s = dict(PRESETS[task_name]["quick" if quick else "full"])
    layers, dim, heads, hidden = s.pop("model")
    s.update(n_layer=layers, n_embd=dim, n_head=heads, n_hidden=hidden)
    s.update({k: v for k, v in overrides.items() if v is not None})
    check_formulation(s["formulation"])
    return s


def model_config(task: Task, s: dict) -> dict:
    return {
        "block_size": block_size(task, s["formulation"]), "vocab_size": len(Vocab(task)),
        "n_layer": s["n_layer"], "n_embd": s["n_embd"], "n_head": s["n_head"], "n_kv_head": s["n_head"],
        "n_hidden": s["n_hidden"], "dropout": 0.0, "bias": False, "use_rope": True,
        "is_causal": s["formulation"] == "causal",
    }


def train_config(s: dict, seed: int, out_dir: Path, device: str, log: bool) -> dict:
    steps = int(s["steps"])
    return {
        "batch_size": int(s["batch_size"]), "max_iters": steps, "learning_rate": float(s["lr"]),
        "min_lr": float(s["lr"]) / 10, "warmup_iters": min(100, steps // 10), "weight_decay": 0.1,
        "beta2": 0.99, "grad_clip": 1.0, "random_seed": seed, "device": device,
        "eval_interval": max(1, steps // 25), "eval_iters": 2, "log_interval": max(1, steps // 200),
        "save_checkpoint_to": str(out_dir), "save_interval": steps or 1, "save_best": False, "keep_last": 1,
        "tensorboard": False, "progress": log,
    }


def accuracy(task: Task, model, vocab: Vocab, formulation: str, n: int, seed: int) -> dict:
    """Exact-match accuracy of greedy answers on n fresh samples from the held-out part of the task."""
    rng = random.Random(f"eval-{seed}")  # a stream of its own, independent of the training stream
    samples = [draw(task, rng, heldout=True) for _ in range(n)]
    questions = [q for q, _ in samples]
    answers = predict(model, vocab, questions, task.answer_len, formulation)
    hits = [pred == a for pred, (_, a) in zip(answers, samples, strict=True)]
    result = {
        "eval_samples": n, "correct": sum(hits), "accuracy": sum(hits) / n,
        # always answering the most frequent answer: the floor a model must clearly beat
        "majority_baseline": Counter(tuple(a) for _, a in samples).most_common(1)[0][1] / n,
        "examples": [{"question": " ".join(q), "answer": " ".join(a), "predicted": " ".join(p)}
                     for (q, a), p in list(zip(samples, answers, strict=True))[:5]],
    }
    if task.name == "bool":  # accuracy per expression depth
        by_depth: dict[int, list[bool]] = {}
        for (q, _), hit in zip(samples, hits, strict=True):
            by_depth.setdefault(task.stratum(q), []).append(hit)
        result["accuracy_by_depth"] = {str(d): {"samples": len(h), "accuracy": sum(h) / len(h)}
                                       for d, h in sorted(by_depth.items())}
    return result


def solve(task_name: str, *, quick: bool = False, seed: int = 0, eval_samples: int = 10_000,
          out_dir: str | Path = "runs/problem", device: str = "auto", log: bool = True,
          task_params: dict | None = None, threads: int | None = None, **overrides) -> dict:
    """Generate data, train, evaluate; returns the report (and the trained model under "model").

    threads sets torch's CPU threads for the run (restored afterwards): models this small gain nothing from
    more threads, and on a busy machine extra threads spin-wait for each other (docs/performance.md, "Measurements").
    """
    task = make_task(task_name, **(task_params or {}))
    s = settings(task_name, quick, **overrides)
    vocab = Vocab(task)
    out_dir = Path(out_dir)
    mc = model_config(task, s)
    if s.get("intermediate") and task.intermediate(task.sample(random.Random(0))[0]) is None:
        raise ValueError(f"task {task.name} has no intermediate targets")
    train_loader = ProblemLoader(task, s["formulation"], int(s["batch_size"]), seed,
                                 intermediate=bool(s.get("intermediate")))
    # the held-out loss is on the answer alone, comparable between runs with and without intermediates
    val_loader = ProblemLoader(task, s["formulation"], 128, seed + 1, heldout=True)
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _train_and_score(task, s, vocab, mc, train_loader, val_loader, seed, out_dir, device, log,
                                eval_samples)
    finally:
        torch.set_num_threads(saved_threads)


def _train_and_score(task, s, vocab, mc, train_loader, val_loader, seed, out_dir, device, log, eval_samples):
    from nano.train import run

    t0 = time.perf_counter()
    result = run(mc, train_config(s, seed, out_dir, device, log), train_loader=train_loader,
                 val_loader=val_loader, tokenizer=vocab.tokenizer(), log=log)
    train_secs = time.perf_counter() - t0
    model = result["model"]
    t1 = time.perf_counter()
    acc = accuracy(task, model, vocab, s["formulation"], eval_samples, seed)
    report = {
        "task": task.name, "task_params": task.params(), "formulation": s["formulation"],
        "model_config": mc, "parameters": model.num_params(), "steps": result["step"],
        "batch_size": int(s["batch_size"]), "learning_rate": float(s["lr"]), "seed": seed,
        "intermediate_targets": bool(s.get("intermediate")),
        "train_seconds": round(train_secs, 1), "eval_seconds": round(time.perf_counter() - t1, 1),
        "device": str(next(model.parameters()).device), "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "final_train_loss": result["train_loss"], "final_val_loss": result["val_loss"],
        "metrics_log": result["metrics_log"], "checkpoint": result["checkpoint"], **acc,
    }
    report["summary"] = summary_line(report)
    report["model"] = model
    return report


def summary_line(r: dict) -> str:
    mc = r["model_config"]
    params = " ".join(f"{k}={v}" for k, v in r["task_params"].items())
    form = r["formulation"] + (" + intermediate targets" if r.get("intermediate_targets") else "")
    return (f"{r['task']} ({params}, {form}): model {mc['n_layer']}x{mc['n_embd']} "
            f"{r['parameters'] / 1e3:.0f}k params, {r['steps']} steps x {r['batch_size']}, "
            f"train {r['train_seconds']:.0f} s on {r['device']} | accuracy {100 * r['accuracy']:.2f}% "
            f"({r['correct']}/{r['eval_samples']} held-out samples)")


def write_report(report: dict, path: str | Path) -> None:
    """The report as JSON (without the model), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in report.items() if k != "model"}
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def plot_curves(report: dict, path: str | Path) -> None:
    """Training curve PNG (train and held-out loss on answer tokens) from the trainer's metrics log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = [], []
    for line in Path(report["metrics_log"]).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        (val if rec.get("split") == "val" else train).append((rec["step"], rec["loss"]))
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for points, label in ((train, "train"), (val, "held-out")):
        if points:
            ax.plot(*zip(*points, strict=True), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("answer-token loss")
    ax.set_title(f"{report['task']} ({report['formulation']}): accuracy {100 * report['accuracy']:.2f}%",
                 fontsize=10)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
