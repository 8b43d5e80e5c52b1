"""Training throughput: nano.train vs a plain nanoGPT-style loop (same model, same batch), medians.

    python benches/bench_train.py [--steps 20] [--batch 8]

Steps of the two are interleaved (one each, in turn) so machine load hits both alike; prints median tokens/s
for both and the ratio (nano / reference; target >= 1.0), by wall clock and by process CPU time. With a CUDA device it also runs
the N56 configuration (``python/nano/configs/model_56m.json``, the shape's one owner) in bf16 and prints the
MFU the trainer reports (target >= 45%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import nano
import torch
from nano.model import Transformer
from nano.train import run
from nano.train.metrics import read_metrics

CPU_MODEL = dict(block_size=128, vocab_size=2048, n_layer=4, n_embd=128, n_head=4, n_kv_head=2, n_hidden=352)
GPU_MODEL = json.loads((Path(nano.__file__).parent / "configs" / "model_56m.json").read_text(encoding="utf-8"))


class FixedBatches:
    def __init__(self, batch):
        self.batch = batch

    def next_batch(self):
        return self.batch

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


def make_batch(cfg, batch_size):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg["vocab_size"], (batch_size, cfg["block_size"] + 1), generator=g)
    return x[:, :-1].contiguous(), x[:, 1:].contiguous(), torch.ones(batch_size, cfg["block_size"])


def reference_loop(cfg, batch, steps, device, dtype) -> float:
    """The plain loop: forward, loss, backward, clip, AdamW step (nanoGPT's train.py without extras)."""
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1,
                            **({"fused": True} if device.type == "cuda" else {}))
    x, y, _ = (t.to(device) for t in batch)
    ctx = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else torch.autocast(
        device.type, enabled=False)

    def step():
        with ctx:
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(steps):  # warm-up, as the trainer's first window
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return x.numel() * steps / (time.perf_counter() - t0)


def nano_trainer(cfg, batch, steps, device, dtype_name) -> dict:
    """tokens/s of the second log window (steps+1 .. 2*steps) of nano.train.run."""
    with tempfile.TemporaryDirectory() as tmp:
        tc = dict(save_checkpoint_to=tmp, batch_size=batch[0].shape[0], max_iters=2 * steps, log_interval=steps,
                  eval_interval=10**9, save_interval=10**9, progress=False, tensorboard=False,
                  device=str(device), dtype=dtype_name, learning_rate=1e-3, warmup_iters=0, keep_last=0)
        result = run(cfg, tc, train_loader=FixedBatches(batch), log=False)
        return [r for r in read_metrics(result["metrics_log"]) if r["split"] == "train"][-1]


def interleaved_cpu(cfg, batch, steps: int, warmup: int = 2) -> dict:
    """Alternate one nano.train step and one reference step, so both see the same machine load.

    The trainer step is the one ``run`` executes (_Trainer.train_step: data, loss mask, accumulation
    normalisation, clipping, AdamW, LR schedule); the reference is the plain loop of ``reference_loop``.
    """
    from nano.train import runtime
    from nano.train.config import normalise
    from nano.train.loop import _Trainer

    with tempfile.TemporaryDirectory() as tmp:
        tc = normalise(dict(save_checkpoint_to=tmp, batch_size=batch[0].shape[0], max_iters=10**6,
                            progress=False, tensorboard=False, device="cpu", dtype="float32",
                            learning_rate=1e-3, warmup_iters=0))
        ddp, device = runtime.setup_distributed("cpu")
        trainer = _Trainer(tc, ddp, device, cfg, FixedBatches(batch), None, None, False)
        torch.manual_seed(0)
        model = Transformer(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        x, y, _ = batch

        def reference_step():
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        wall = {"nano": [], "ref": []}
        cpu = {"nano": [], "ref": []}
        for i in range(warmup + steps):
            for name, step in (("nano", trainer.train_step), ("ref", reference_step)):
                w, c = time.perf_counter(), time.process_time()
                step()
                if i >= warmup:
                    wall[name].append(time.perf_counter() - w)
                    cpu[name].append(time.process_time() - c)
    tokens = x.numel()
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    return {"nano": tokens / med["nano"], "ref": tokens / med["ref"], "ratio": med["ref"] / med["nano"],
            "cpu_ratio": cmed["ref"] / cmed["nano"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    batch = make_batch(CPU_MODEL, args.batch)
    print(f"CPU, {torch.get_num_threads()} threads, model {CPU_MODEL}, batch {args.batch}x{CPU_MODEL['block_size']}")
    r = interleaved_cpu(CPU_MODEL, batch, args.steps)
    print(f"nano.train      {r['nano']:10.0f} tokens/s  (median of {args.steps} steps)")
    print(f"reference loop  {r['ref']:10.0f} tokens/s  (median of {args.steps} steps, interleaved)")
    print(f"ratio nano/reference: {r['ratio']:.3f} wall-clock, {r['cpu_ratio']:.3f} by CPU time")

    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        gbatch = make_batch(GPU_MODEL, 32)
        rec = nano_trainer(GPU_MODEL, gbatch, 20, gpu, "bfloat16")
        refs = reference_loop(GPU_MODEL, gbatch, 20, gpu, torch.bfloat16)
        mfu = rec.get("mfu")
        print(f"GPU {torch.cuda.get_device_name()}: 56M bf16, batch 32x512: nano {rec['tokens_per_s']:.0f} tokens/s, "
              f"reference {refs:.0f} tokens/s, ratio {rec['tokens_per_s'] / refs:.3f}, "
              f"MFU {'%.1f%%' % (100 * mfu) if mfu else 'unknown device peak'}")
    else:
        print("no CUDA device: MFU of the 56M configuration not measured")


if __name__ == "__main__":
    main()
