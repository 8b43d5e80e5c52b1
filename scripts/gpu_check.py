"""One short check of every CUDA path of Nano on a GPU machine (docs/training.md, "Checking a GPU machine").

    PYTHONPATH=python python3 scripts/gpu_check.py --out OUT_DIR            # on the GPU box
    python3 scripts/gpu_check.py --device cpu --tiny --skip 9               # a dry run of the script on CPU

Each step runs in a child process of its own (a crash or CUDA error in one step does not stop the others),
is timed, and ends with ``PASS``, ``FAIL`` or ``SKIP`` and its reason. Steps:

 1 env        nvidia-smi, torch, CUDA, bf16, nccl, the native extension
 2 pretrain   ~22M-parameter model on the built-in corpus, dtype auto (bf16), 300 steps: loss falls;
              tokens/s and MFU; the checkpoint loads back on CPU
 3 resume     the same run in one go, twice, and stopped halfway + resumed in a new process (dropout on,
              so the CUDA RNG state matters), with SDPA "auto" and "math"
 4 torchrun   torchrun --nproc_per_node 1 with DDP (nccl) and with fsdp=true (FSDP2): trains, saves, loads
 5 sft_lora   full SFT and LoRA from step 2's checkpoint on SFT data made from the corpus
 6 infer      PyTorch logits and greedy text on CUDA (f32, bf16) against CPU f32; the nano.infer CLI
 7 export     the CUDA-trained checkpoint -> f32 .bin -> nano.Engine greedy text equals PyTorch's
 8 problem    python -m nano.problem reverse --quick on CUDA
 9 throughput tokens/s and MFU of the 56M shape (configs/model_56m.json), eager and torch.compile

Output: ``OUT/summary.log`` (the PASS/FAIL lines and figures), ``OUT/steps.log`` (every child's output),
``OUT/results.json``. ``--budget`` seconds bound the whole run: a step that no longer fits is skipped.
Without the native extension (``nano._native`` fails to import) the package is imported with a stub, the
training steps use synthetic token data and the steps that need the tokenizer or the engine are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEPS = ["env", "pretrain", "resume", "torchrun", "sft_lora", "infer", "export", "problem", "throughput"]
# per step: (child timeout s, time it should need s) on an H200; --tiny runs on CPU use the same caps
TIMES = {"env": (40, 10), "pretrain": (90, 35), "resume": (90, 45), "torchrun": (90, 40), "sft_lora": (60, 25),
         "infer": (60, 25), "export": (45, 10), "problem": (60, 20), "throughput": (150, 90)}
PROMPT = "天地"


# ---------------------------------------------------------------------------------------------------------------
# the driver


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu (a dry run)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu_check", help="logs and results.json")
    ap.add_argument("--work", default=None, help="scratch directory (default: /tmp/nano_gpu_check)")
    ap.add_argument("--budget", type=float, default=360.0, help="seconds for the whole run")
    ap.add_argument("--tiny", action="store_true", help="tiny models and few steps (for a CPU dry run)")
    ap.add_argument("--only", default="", help="comma-separated step numbers or names to run")
    ap.add_argument("--skip", default="", help="comma-separated step numbers or names to leave out")
    ap.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this (child) process
    args = ap.parse_args()
    work = Path(args.work or "/tmp/nano_gpu_check")
    if args.step:
        return child(args.step, work, args.device, args.tiny)

    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    summary = open(out / "summary.log", "w", encoding="utf-8")
    steps_log = open(out / "steps.log", "w", encoding="utf-8")

    def say(line: str) -> None:
        print(line, flush=True)
        summary.write(line + "\n")
        summary.flush()

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"], native = python_path(work)
    say(f"gpu_check: device={args.device} tiny={args.tiny} budget={args.budget:.0f}s native_extension={native}")
    wanted = select(args.only, args.skip)
    results = {"device": args.device, "tiny": args.tiny, "native": native, "steps": {}}
    for number, name in enumerate(STEPS, 1):
        if name not in wanted:
            continue
        cap, need = TIMES[name]
        left = args.budget - (time.monotonic() - started)
        if left < need:
            res = {"status": "SKIP", "reason": f"{left:.0f}s of the budget left, the step needs ~{need}s"}
            seconds = 0.0
        else:
            t0 = time.monotonic()
            res = run_child(name, work, args, env, min(cap, left), steps_log)
            seconds = time.monotonic() - t0
        res["seconds"] = round(seconds, 1)
        results["steps"][name] = res
        figures = res.get("figures") or {}
        say(f"[{number}] {name:<10} {res['status']:<4} {seconds:6.1f}s  {res.get('reason', '')}")
        for key, value in figures.items():
            say(f"      {key} = {value}")
        (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    counts = {s: sum(r["status"] == s for r in results["steps"].values()) for s in ("PASS", "FAIL", "SKIP")}
    say(f"gpu_check: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['SKIP']} SKIP "
        f"in {time.monotonic() - started:.0f}s")
    for name in ("pretrain", "throughput"):  # keep the metrics logs beside the results
        for src in sorted(work.glob(f"{name}*/metrics.jsonl"))[:2]:
            shutil.copyfile(src, out / f"metrics_{src.parent.name}.jsonl")
    return 1 if counts["FAIL"] else 0


def select(only: str, skip: str) -> list[str]:
    def names(spec: str) -> set[str]:
        out = set()
        for item in filter(None, (s.strip() for s in spec.split(","))):
            out.add(STEPS[int(item) - 1] if item.isdigit() else item)
        return out

    chosen = names(only) or set(STEPS)
    return [s for s in STEPS if s in chosen and s not in names(skip)]


def python_path(work: Path) -> tuple[str, bool]:
    """PYTHONPATH for the children: the source tree, or a copy of it with a stub extension if the real
    ``nano._native`` does not import here (then the steps that need it are skipped)."""
    src = str(REPO / "python")
    probe = subprocess.run([sys.executable, "-c", "import nano._native"], env=dict(os.environ, PYTHONPATH=src),
                           capture_output=True, text=True)
    if probe.returncode == 0:
        return src, True
    print(f"gpu_check: nano._native does not import ({probe.stderr.strip().splitlines()[-1:]}); "
          "using a stub", flush=True)
    shim = work / "stub_path"
    shutil.copytree(REPO / "python" / "nano", shim / "nano", ignore=shutil.ignore_patterns("*.so", "web"))
    (shim / "nano" / "_native.py").write_text("__version__ = '0+stub'\nSTUB = True\n")
    return str(shim), False


def run_child(name: str, work: Path, args, env: dict, timeout: float, log) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--work", str(work),
           "--device", args.device] + (["--tiny"] if args.tiny else [])
    result_file = work / f"result_{name}.json"
    log.write(f"\n===== {name} =====\n")
    log.flush()
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, errors="replace")
        output, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc = None
    log.write(output)
    log.flush()
    res = json.loads(result_file.read_text(encoding="utf-8")) if result_file.exists() else {}
    if rc is None:
        res.update(status="FAIL", reason=f"timed out after {timeout:.0f}s; " + res.get("reason", ""))
    elif rc != 0 or "status" not in res:
        tail = " | ".join(line for line in output.strip().splitlines()[-4:])
        res.update(status="FAIL", reason=f"child exited with {rc}: {tail[-600:]}")
    return res


# ---------------------------------------------------------------------------------------------------------------
# the child side: shared helpers


class Step:
    """Collects sub-check failures and figures; writes the result file after every change."""

    def __init__(self, name: str, work: Path, device: str, tiny: bool):
        self.name, self.work, self.device, self.tiny = name, work, device, tiny
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.figures: dict = {}
        self.skip_reason: str | None = None
        self.path = work / f"result_{name}.json"
        self.path.unlink(missing_ok=True)

    def check(self, ok: bool, what: str) -> bool:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failures.append(what)
        return ok

    def fig(self, **kw) -> None:
        for k, v in kw.items():
            self.figures[k] = round(v, 6) if isinstance(v, float) else v
        self.flush(partial=True)

    def flush(self, partial: bool = False) -> None:
        if self.skip_reason:
            status, reason = "SKIP", self.skip_reason
        elif self.failures:
            status, reason = "FAIL", "; ".join(self.failures)
        else:
            status, reason = "PASS", "; ".join(self.notes)
        data = {"figures": self.figures, "reason": reason}
        if not partial:
            data["status"] = status
        self.path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def child(name: str, work: Path, device: str, tiny: bool) -> int:
    step = Step(name, work, device, tiny)
    try:
        globals()[f"step_{name}"](step)
    except Exception as e:  # reported as a failure with its cause; the traceback goes to steps.log
        traceback.print_exc()
        step.failures.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e) else ''}")
    step.flush()
    return 0


def has_native() -> bool:
    import nano._native as native

    return not getattr(native, "STUB", False)


def py() -> str:
    return sys.executable


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_shape(kind: str, vocab: int, tiny: bool) -> dict:
    if tiny:
        return dict(block_size=32, vocab_size=vocab, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, n_hidden=64,
                    dropout=0.0)
    if kind == "mid":  # ~22M parameters with the corpus vocabulary
        return dict(block_size=256, vocab_size=vocab, n_layer=8, n_embd=512, n_head=8, n_kv_head=4,
                    n_hidden=1408, dropout=0.0)
    return dict(block_size=128, vocab_size=vocab, n_layer=4, n_embd=256, n_head=8, n_kv_head=4, n_hidden=704,
                dropout=0.0)


def train_cfg(out: Path, data: Path | None, device: str, **kw) -> dict:
    cfg = dict(train_data=str(data) if data else None, save_checkpoint_to=str(out), batch_size=32, max_iters=100,
               learning_rate=1e-3, warmup_iters=10, min_lr=1e-4, eval_interval=50, eval_iters=4,
               log_interval=10, progress=False, tensorboard=False, dtype="auto", device=device, random_seed=7)
    cfg.update(kw)
    return cfg


def synthetic_dataset(path: Path, vocab: int, n_tokens: int, seed: int = 0, learnable: bool = True) -> Path:
    """A prepared pretraining dataset written directly (meta.json + uint16 tokens), no tokenizer needed."""
    import numpy as np

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if learnable:  # mostly "next = previous + 1 or + 2", so the loss can fall
        tokens = np.cumsum(rng.integers(1, 3, n_tokens)) % vocab
    else:
        tokens = rng.integers(0, vocab, n_tokens)
    splits = {}
    for split, part in (("train", tokens), ("val", tokens[: max(n_tokens // 20, 4096)])):
        part.astype("<u2").tofile(path / f"{split}.tokens")
        splits[split] = {"tokens": int(len(part)), "documents": 1}
    meta = {"format": "nano-tokens", "version": 1, "kind": "pretrain", "dtype": "uint16", "vocab_size": vocab,
            "tokenizer_hash": "0000gpucheck0000", "block_size": None, "splits": splits}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def corpus_data(work: Path) -> tuple[Path, int]:
    """The built-in corpus prepared with its vocabulary (or synthetic tokens without the extension)."""
    out = work / "data_pre"
    if (out / "meta.json").exists():
        return out, json.loads((out / "meta.json").read_text())["vocab_size"]
    if not has_native():
        return synthetic_dataset(out, 1884, 200_000), 1884
    from nano.data import prepare_pretrain
    from nano.tokenizer import Tokenizer
    from nano.train.demo import CORPUS, VOCAB

    tok = Tokenizer.from_file(str(VOCAB))
    prepare_pretrain([str(CORPUS)], out, tok, val_fraction=0.05, seed=0, progress=False)
    return out, tok.vocab_size


def sft_data(work: Path, block_size: int) -> Path | None:
    """SFT pairs made from the corpus: the first half of a line asks, the second half answers."""
    out = work / "data_sft"
    if (out / "meta.json").exists():
        return out
    if not has_native():
        return None
    from nano.data import prepare_sft
    from nano.tokenizer import Tokenizer
    from nano.train.demo import CORPUS, VOCAB

    lines = [s.strip() for s in CORPUS.read_text(encoding="utf-8").splitlines() if len(s.strip()) >= 8]
    jsonl = work / "sft.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for s in lines:
            cut = min(len(s) // 2, block_size // 3)
            f.write(json.dumps({"question": s[:cut], "answer": s[cut:cut + block_size // 2]},
                               ensure_ascii=False) + "\n")
    prepare_sft([str(jsonl)], out, Tokenizer.from_file(str(VOCAB)), block_size=block_size, val_fraction=0.1,
                progress=False)
    return out


def write_json(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False))
    return path


def cli_train(step: Step, model: dict, cfg: dict, tag: str, launcher: list[str] | None = None,
              extra: list[str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """python -m nano.train (optionally under a launcher such as torchrun) with JSON config files."""
    m = write_json(step.work / f"{tag}_model.json", model)
    t = write_json(step.work / f"{tag}_train.json", cfg)
    cmd = (launcher or [py()]) + ["-m", "nano.train", "-m", str(m), "-t", str(t)] + (extra or [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    print(f"  $ {' '.join(cmd[-7:])}  ({time.perf_counter() - t0:.1f}s, rc={proc.returncode})")
    print("    " + "\n    ".join((proc.stderr.strip().splitlines() or [""])[-12:]))
    if proc.stdout.strip():
        print("    " + "\n    ".join(proc.stdout.strip().splitlines()[-4:]))
    return proc


def losses(metrics_path: Path, split: str = "train") -> list[tuple[int, float]]:
    from nano.train.metrics import read_metrics

    return [(r["step"], r["loss"]) for r in read_metrics(metrics_path) if r["split"] == split]


def steady(metrics_path: Path, key: str, skip: int = 1) -> float | None:
    """Median of a train-record field, leaving out the first records (warm-up, compilation)."""
    from nano.train.metrics import read_metrics

    values = [r[key] for r in read_metrics(metrics_path) if r["split"] == "train" and key in r]
    values = values[skip:] or values
    return statistics.median(values) if values else None


def loads_on_cpu(step: Step, ckpt_path: Path) -> None:
    """The checkpoint reads back on CPU and its model computes a finite loss there."""
    import torch
    from nano.checkpoint import load_checkpoint
    from nano.model import ModelConfig, Transformer

    ckpt = load_checkpoint(ckpt_path)
    on_cpu = all(t.device.type == "cpu" for t in ckpt["model"].values() if torch.is_tensor(t))
    model = Transformer(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    x = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))
    with torch.no_grad():
        _, loss = model(x, x)
    step.check(on_cpu and bool(torch.isfinite(loss)), f"{ckpt_path.name} (step {ckpt['step']}) loads on CPU "
               f"and computes a finite loss ({float(loss):.3f})")


def base_checkpoint(step: Step) -> Path:
    """Step 2's checkpoint, or a short training run of the same shape when step 2 did not leave one."""
    path = step.work / "pretrain" / "last.pt"
    if path.exists():
        return path
    from nano.train import run

    data, vocab = corpus_data(step.work)
    step.notes.append("step 2 left no checkpoint: trained a short base here")
    run(model_shape("mid", vocab, step.tiny), train_cfg(step.work / "pretrain", data, step.device,
                                                        max_iters=30, eval_interval=30), log=False)
    return path


# ---------------------------------------------------------------------------------------------------------------
# the steps


def step_env(step: Step) -> None:
    import torch

    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        step.fig(nvidia_smi=q.stdout.strip() or q.stderr.strip())
    step.fig(torch=torch.__version__, python=sys.version.split()[0], cuda_runtime=torch.version.cuda)
    cuda = torch.cuda.is_available()
    step.fig(cuda_available=cuda)
    if step.device.startswith("cuda"):
        if not step.check(cuda, "torch.cuda.is_available()"):
            return
        props = torch.cuda.get_device_properties(0)
        step.fig(gpu=props.name, capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                 memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
        step.check(torch.cuda.is_bf16_supported(), "bf16 supported")
        import torch.distributed as dist

        step.check(dist.is_nccl_available(), "NCCL backend available")
        step.fig(nccl=".".join(map(str, torch.cuda.nccl.version())))
        try:
            import triton

            step.fig(triton=triton.__version__)
        except ImportError:
            step.fig(triton=None)
        a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ a
        sync("cuda")
        t0 = time.perf_counter()
        for _ in range(20):
            a @ a
        sync("cuda")
        step.fig(bf16_matmul_tflops=round(20 * 2 * 4096**3 / (time.perf_counter() - t0) / 1e12, 1))
    try:
        import nano._native as native

        ok = has_native()
        step.fig(native_version=native.__version__)
        if step.check(ok, "nano._native (the abi3 extension) imports"):
            from nano import Engine, Tokenizer  # noqa: F401

            step.check(True, "nano.Engine and nano.Tokenizer import")
    except Exception as e:
        step.check(False, f"nano._native imports ({e})")


def step_pretrain(step: Step) -> None:
    data, vocab = corpus_data(step.work)
    model = model_shape("mid", vocab, step.tiny)
    iters = 40 if step.tiny else 300
    out = step.work / "pretrain"
    cfg = train_cfg(out, data, step.device, max_iters=iters, warmup_iters=iters // 10, eval_interval=iters // 3,
                    eval_iters=4, log_interval=max(iters // 12, 1), keep_last=1)
    t0 = time.perf_counter()
    proc = cli_train(step, model, cfg, "pretrain")
    step.fig(wall_s=round(time.perf_counter() - t0, 1), data=str(data.name), vocab=vocab)
    if not step.check(proc.returncode == 0, "python -m nano.train exits 0"):
        return
    if step.device.startswith("cuda"):
        step.check("autocast bfloat16" in proc.stderr and "cuda" in proc.stderr,
                   "trains on cuda under bf16 autocast (dtype auto)")
    train, val = losses(out / "metrics.jsonl"), losses(out / "metrics.jsonl", "val")
    from nano.model import ModelConfig, Transformer

    step.fig(params_m=round(Transformer(ModelConfig(**model)).num_params() / 1e6, 2),
             tokens_per_step=cfg["batch_size"] * model["block_size"],
             train_loss_first=train[0][1], train_loss_last=train[-1][1],
             val_losses=[round(v, 4) for _, v in val],
             tokens_per_s=round(steady(out / "metrics.jsonl", "tokens_per_s") or 0),
             mfu=steady(out / "metrics.jsonl", "mfu"))
    drop = 0.0 if step.tiny else 1.0  # a tiny dry run only needs the loss to move down
    step.check(train[-1][1] < train[0][1] - drop, f"train loss falls ({train[0][1]:.3f} -> {train[-1][1]:.3f})")
    # The built-in corpus is ~10k tokens: 300 steps of 8k tokens see it ~250 times, so the model memorises it
    # and the held-out loss rises after its first evaluation. What is checked: the first evaluation is below
    # the loss of a uniform guess, ln(vocab); the rest is recorded.
    uniform = math.log(vocab)
    step.check(val[0][1] < uniform, f"first validation loss {val[0][1]:.3f} below ln(vocab) = {uniform:.3f} "
                                    f"(all: {[round(v, 3) for _, v in val]})")
    loads_on_cpu(step, out / "last.pt")


def step_resume(step: Step) -> None:
    import torch
    from nano.train import run

    data, vocab = corpus_data(step.work)
    model = dict(model_shape("small", vocab, step.tiny), dropout=0.1)  # dropout: the CUDA RNG must be restored
    n = 12 if step.tiny else 40
    variants = ("auto",) if step.device == "cpu" else ("auto", "math")
    for sdp in variants:
        base = dict(max_iters=n, save_interval=n // 2, eval_interval=n // 2, eval_iters=2, log_interval=1,
                    lr_decay_iters=n, warmup_iters=4, sdp_kernel=sdp, keep_last=2)
        w = step.work / f"resume_{sdp}"
        a = run(model, train_cfg(w / "a", data, step.device, **base), log=False)
        b = run(model, train_cfg(w / "b", data, step.device, **base), log=False)
        part = train_cfg(w / "c", data, step.device, **base)
        run(model, dict(part, max_iters=n // 2), log=False)  # interrupted halfway
        proc = cli_train(step, model, part, f"resume_{sdp}", extra=["--resume"])
        if not step.check(proc.returncode == 0, f"[{sdp}] --resume in a new process exits 0"):
            continue
        la, lb, lc = (losses(Path(p) / "metrics.jsonl") for p in (w / "a", w / "b", w / "c"))
        if not step.check([s for s, _ in lc] == [s for s, _ in la] == list(range(1, n + 1)),
                          f"[{sdp}] the resumed run logs steps 1..{n} once each"):
            continue
        dab = max(abs(x[1] - y[1]) for x, y in zip(la, lb, strict=True))
        dac = max(abs(x[1] - y[1]) for x, y in zip(la, lc, strict=True))
        dac_first = max(abs(x[1] - y[1]) for x, y in zip(la[: n // 2], lc[: n // 2], strict=True))
        ca = torch.load(w / "a" / "last.pt", map_location="cpu", weights_only=False)["model"]
        cc = torch.load(w / "c" / "last.pt", map_location="cpu", weights_only=False)["model"]
        wdiff = max(float((ca[k].float() - cc[k].float()).abs().max()) for k in ca)
        deterministic = dab == 0.0
        step.fig(**{f"{sdp}_repeat_max_loss_diff": dab, f"{sdp}_resume_max_loss_diff": dac,
                    f"{sdp}_resume_max_weight_diff": wdiff, f"{sdp}_deterministic": deterministic,
                    f"{sdp}_loss_first_last": [round(la[0][1], 4), round(la[-1][1], 4)]})
        if deterministic:
            step.check(dac_first == 0.0, f"[{sdp}] the first half equals the one-go run's")
        if deterministic:
            step.check(dac == 0.0 and wdiff == 0.0,
                       f"[{sdp}] run-to-run bit-identical, and the resumed run equals the one-go run bit for bit "
                       f"(loss diff {dac:g}, weight diff {wdiff:g})")
        else:  # nondeterministic kernels: the resumed run must stay as close as two one-go runs do
            tol = max(4 * dab, 1e-3 * abs(la[-1][1]))
            step.check(dac <= tol, f"[{sdp}] kernels not bit-reproducible run to run (diff {dab:g}); resumed "
                                   f"within {tol:g} of the one-go run (diff {dac:g})")
        del a, b


def step_torchrun(step: Step) -> None:
    data, vocab = corpus_data(step.work)
    model = model_shape("small", vocab, step.tiny)
    n = 16 if step.tiny else 100
    backend = "nccl" if step.device.startswith("cuda") else "gloo"
    launcher = [py(), "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    keys = {}
    for mode in ("ddp", "fsdp"):
        out = step.work / f"torchrun_{mode}"
        cfg = train_cfg(out, data, step.device, max_iters=n, warmup_iters=n // 10, eval_interval=n // 2,
                        log_interval=max(n // 10, 1), fsdp=mode == "fsdp", keep_last=1)
        t0 = time.perf_counter()
        proc = cli_train(step, model, cfg, f"torchrun_{mode}", launcher=launcher)
        step.fig(**{f"{mode}_wall_s": round(time.perf_counter() - t0, 1)})
        if not step.check(proc.returncode == 0, f"[{mode}] torchrun --nproc_per_node=1 exits 0"):
            continue
        want = f"{'DDP' if mode == 'ddp' else 'FSDP2'} over 1 rank ({backend})"
        step.check(want in proc.stderr, f"[{mode}] the trainer reports '{want}'")
        tr = losses(out / "metrics.jsonl")
        step.fig(**{f"{mode}_loss_first_last": [round(tr[0][1], 4), round(tr[-1][1], 4)],
                    f"{mode}_tokens_per_s": round(steady(out / "metrics.jsonl", "tokens_per_s") or 0)})
        step.check(tr[-1][1] < tr[0][1] - (0.0 if step.tiny else 0.5), f"[{mode}] loss falls ({tr[0][1]:.3f} -> {tr[-1][1]:.3f})")
        import torch

        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        step.check(ckpt["world_size"] == 1 and ckpt["step"] == n, f"[{mode}] last.pt: world_size 1, step {n}")
        keys[mode] = set(ckpt["model"])
        loads_on_cpu(step, out / "last.pt")
    if len(keys) == 2:
        step.check(keys["ddp"] == keys["fsdp"], "FSDP2's full state dict has the same keys as DDP's")
    step.notes.append("world size 1 only (one GPU): the collectives run, nothing is actually sharded")


def step_sft_lora(step: Step) -> None:
    import torch
    from nano.checkpoint import load_checkpoint
    from nano.train import run

    base = base_checkpoint(step)
    block = load_checkpoint(base)["model_config"]["block_size"]
    sft = sft_data(step.work, block)
    if sft is None:
        step.skip_reason = "needs the native extension (SFT data preparation)"
        return
    n = 12 if step.tiny else 60
    common = dict(from_checkpoint=str(base), max_iters=n, warmup_iters=n // 10, eval_interval=n, eval_iters=2,
                  log_interval=max(n // 6, 1), batch_size=16, keep_last=1)
    full = run(None, train_cfg(step.work / "sft", sft, step.device, learning_rate=3e-4, **common), log=False)
    lf = losses(Path(full["metrics_log"]))
    step.fig(sft_loss_first_last=[round(lf[0][1], 4), round(lf[-1][1], 4)])
    step.check(full["step"] == n and lf[-1][1] < lf[0][1], f"full SFT: {n} steps, loss falls "
                                                            f"({lf[0][1]:.3f} -> {lf[-1][1]:.3f})")
    del full
    lora = run(None, train_cfg(step.work / "lora", sft, step.device, use_lora=True, lora_rank=8, lora_alpha=16,
                               learning_rate=2e-3, **common), log=False)
    ll = losses(Path(lora["metrics_log"]))
    step.fig(lora_loss_first_last=[round(ll[0][1], 4), round(ll[-1][1], 4)])
    step.check(ll[-1][1] < ll[0][1], f"LoRA: loss falls ({ll[0][1]:.3f} -> {ll[-1][1]:.3f})")
    base_sd = load_checkpoint(base)["model"]
    same = all(torch.equal(v.cpu(), base_sd[k].cpu()) for k, v in lora["model"].state_dict().items()
               if ".lora_" not in k)
    step.check(same, "LoRA leaves the base weights unchanged")
    step.check(lora["lora"] is not None and Path(lora["lora"]).exists(), "lora.pt written")
    del lora
    from nano.infer import load_model, stream

    model, tok = load_model(base, lora=step.work / "lora" / "lora.pt", device=step.device)
    text = "".join(stream(model, tok, PROMPT, instruct=True, temperature=0.0, max_seq_length=48))
    step.fig(lora_instruct_sample=text[:60])
    step.check(next(model.parameters()).device.type == step.device.split(":")[0],
               f"the adapter loads onto the base on {step.device} and generates")


def greedy_ids(model, ids: list[int], n: int, eos: int | None) -> list[int]:
    return list(model.generate(ids, n, temperature=0.0, eos_id=eos))


def step_infer(step: Step) -> None:
    import torch

    if not has_native():
        step.skip_reason = "needs the native extension (the checkpoint's tokenizer)"
        return
    from nano.infer import load_model

    ckpt = base_checkpoint(step)
    cpu, tok = load_model(ckpt, device="cpu")
    dev, _ = load_model(ckpt, device=step.device)
    data, _ = corpus_data(step.work)
    from nano.data.loader import BlockLoader

    x, _, _ = BlockLoader(data, "val", cpu.config.block_size, 4, seed=0).next_batch()
    with torch.no_grad():
        ref, _ = cpu(x)
        got, _ = dev(x.to(step.device))
        with torch.autocast(device_type=step.device.split(":")[0], dtype=torch.bfloat16):
            got_bf, _ = dev(x.to(step.device))
        bf_weights = load_model(ckpt, device=step.device)[0].to(torch.bfloat16)
        got_bfw, _ = bf_weights(x.to(step.device))
    scale = float(ref.abs().max())
    d32 = float((got.float().cpu() - ref).abs().max())
    dbf = float((got_bf.float().cpu() - ref).abs().max())
    dbfw = float((got_bfw.float().cpu() - ref).abs().max())
    top1 = float((got_bf.float().cpu().argmax(-1) == ref.argmax(-1)).float().mean())
    top1w = float((got_bfw.float().cpu().argmax(-1) == ref.argmax(-1)).float().mean())
    step.fig(logits_absmax=round(scale, 3), f32_max_abs_diff=d32, bf16_autocast_max_abs_diff=dbf,
             bf16_autocast_top1_agreement=round(top1, 4), bf16_weights_max_abs_diff=dbfw,
             bf16_weights_top1_agreement=round(top1w, 4))
    tol32 = 1e-4 * max(scale, 1.0)
    step.check(d32 <= tol32, f"f32 logits on {step.device} within {tol32:g} of CPU's ({d32:g})")
    step.check(dbf <= 0.05 * scale and top1 >= 0.95,
               f"bf16 autocast logits within 5% of max|logit| ({dbf:.4f} <= {0.05 * scale:.4f}), "
               f"top-1 agreement {top1:.3f} >= 0.95")
    eos = tok.token_to_id("<|eos|>")
    ids = tok.encode(PROMPT)
    n = 24 if step.tiny else 100
    g_cpu, g_dev = greedy_ids(cpu, ids, n, eos), greedy_ids(dev, ids, n, eos)
    g_bf = greedy_ids(bf_weights, ids, n, eos)
    text = tok.decode(g_cpu)
    step.fig(greedy_text=PROMPT + text[:80], greedy_tokens=len(g_cpu),
             bf16_greedy_equal=g_bf == g_cpu,
             bf16_greedy_first_difference=next((i for i, (p, q) in enumerate(zip(g_bf, g_cpu, strict=False)) if p != q), None))
    step.check(g_dev == g_cpu, f"f32 greedy tokens on {step.device} equal CPU's ({len(g_cpu)} tokens)")
    (step.work / "greedy.json").write_text(json.dumps({"prompt": PROMPT, "ids": g_cpu, "text": text,
                                                       "n": n}, ensure_ascii=False))
    proc = subprocess.run([py(), "-m", "nano.infer", "-m", str(ckpt), "--device", step.device, "--prompt", PROMPT,
                           "-t", "0", "-s", str(len(ids) + len(g_cpu)), "--profile"], capture_output=True,
                          text=True, timeout=60)
    print(proc.stdout[-300:], proc.stderr[-300:])
    step.fig(cli_profile=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
    step.check(proc.returncode == 0 and proc.stdout.rstrip("\n") == text,
               f"python -m nano.infer --device {step.device} -t 0 prints the same greedy text")


def step_export(step: Step) -> None:
    if not has_native():
        step.skip_reason = "needs the native extension (writer and engine)"
        return
    from nano import Engine
    from nano.export import export_checkpoint
    from nano.infer import load_model

    ckpt = base_checkpoint(step)
    greedy = step.work / "greedy.json"
    cpu, tok = load_model(ckpt, device="cpu")
    eos = tok.token_to_id("<|eos|>")
    n = 24 if step.tiny else 100
    if greedy.exists():
        ref = json.loads(greedy.read_text(encoding="utf-8"))
    else:  # step 6 did not run: PyTorch greedy text on the device here
        dev, _ = load_model(ckpt, device=step.device)
        ids = greedy_ids(dev, tok.encode(PROMPT), n, eos)
        ref = {"ids": ids, "text": tok.decode(ids), "n": n}
    out = export_checkpoint(ckpt, step.work / "model_f32.bin", "f32")
    step.fig(bin_mb=round(out.stat().st_size / 1e6, 1))
    eng = Engine(out, threads=4)
    t0 = time.perf_counter()
    text = "".join(eng.generate(PROMPT, max_new_tokens=ref["n"], temperature=0.0))
    step.fig(engine_seconds=round(time.perf_counter() - t0, 2))
    step.check(text == ref["text"], f"nano.Engine greedy text of the f32 export equals PyTorch's "
                                    f"({len(ref['ids'])} tokens)")
    import numpy as np
    import torch

    ids = ref["ids"][:32] or tok.encode(PROMPT)
    with torch.no_grad():
        want = cpu(torch.tensor([ids]))[0][0].numpy()
    diff = float(np.abs(eng.logits(ids) - want).max())
    step.fig(engine_vs_torch_logits_max_abs_diff=diff)
    step.check(diff <= 1e-3 * max(float(np.abs(want).max()), 1.0), f"engine logits match PyTorch's ({diff:g})")
    q = export_checkpoint(ckpt, step.work / "model_q8.bin", "q8_0")
    qtext = "".join(Engine(q, threads=4).generate(PROMPT, max_new_tokens=ref["n"], temperature=0.0))
    step.fig(q8_0_greedy_equal=qtext == ref["text"])


def step_problem(step: Step) -> None:
    report = step.work / "problem.json"
    cmd = [py(), "-m", "nano.problem", "reverse", "--quick", "--device", step.device, "--eval-samples", "2000",
           "--quiet", "--out", str(step.work / "problem"), "--report", str(report)]
    if step.tiny:
        cmd += ["--steps", "30"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    print(proc.stdout[-500:], proc.stderr[-1500:])
    if not step.check(proc.returncode == 0, "python -m nano.problem reverse --quick exits 0"):
        return
    r = json.loads(report.read_text(encoding="utf-8"))
    step.fig(summary=r["summary"], accuracy=r["accuracy"], train_seconds=r["train_seconds"], device=r["device"])
    step.check(r["device"].startswith(step.device.split(":")[0]), f"trained on {r['device']}")
    if not step.tiny:
        step.check(r["accuracy"] > 0.5, f"accuracy {r['accuracy']:.3f} > 0.5")


def step_throughput(step: Step) -> None:
    import gc

    import torch
    from nano.model import ModelConfig, flops_per_token
    from nano.train import run
    from nano.train.demo import PACKAGE

    model = json.loads((PACKAGE / "configs" / "model_56m.json").read_text())
    if step.tiny:
        model.update(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, n_hidden=128, block_size=64)
    data = synthetic_dataset(step.work / "data_56m", model["vocab_size"], 4_000_000 if not step.tiny else 50_000,
                             learnable=False)
    batch = 4 if step.tiny else 64
    step.fig(model="model_56m.json", tokens_per_step=batch * model["block_size"],
             flops_per_token=flops_per_token(ModelConfig(**model)))
    for compiled, seconds in ((False, 20), (True, 45)):
        if step.tiny:  # a dry run: a few seconds, no compilation (minutes on CPU)
            if compiled:
                continue
            seconds = 5
        tag = "compile" if compiled else "eager"
        out = step.work / f"throughput_{tag}"
        cfg = train_cfg(out, data, step.device, batch_size=batch, max_iters=10**6, time_limit=seconds,
                        learning_rate=6e-4, warmup_iters=100, eval_interval=10**9, eval_iters=1,
                        log_interval=2 if step.tiny else 10, save_best=False, keep_last=0, compile=compiled)
        t0 = time.perf_counter()
        try:
            result = run(model, cfg, log=False)
        except Exception as e:
            traceback.print_exc()
            step.check(False, f"[{tag}] training raised {type(e).__name__}: {str(e)[:200]}")
            continue
        metrics = out / "metrics.jsonl"
        from nano.train.metrics import read_metrics

        recs = [r for r in read_metrics(metrics) if r["split"] == "train"]
        step.fig(**{f"{tag}_steps": result["step"], f"{tag}_wall_s": round(time.perf_counter() - t0, 1),
                    f"{tag}_first_log_s": recs[0]["time"] if recs else None,
                    f"{tag}_tokens_per_s": round(steady(metrics, "tokens_per_s", skip=2) or 0),
                    f"{tag}_mfu": steady(metrics, "mfu", skip=2),
                    f"{tag}_peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                    if step.device.startswith("cuda") else None})
        step.check(len(recs) >= 3, f"[{tag}] at least 3 logged intervals in {seconds}s ({len(recs)})")
        del result
        gc.collect()
        if step.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    sys.exit(main())
