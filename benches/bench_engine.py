"""Decode / prefill speed of Nano's native engine against peers measured in the same run.

Generates random-weight models in the issue's shapes (S15, N56, M110), exports them with Nano's exporter in
every dtype, and measures, per thread count:
  * Nano (`nano-infer bench`, the ladder line) for f32 / f16 / q8_0 / q4_0,
  * PyTorch CPU (nano.model.Transformer with its KV cache, greedy decode),
  * llama2.c `run.c` (f32) and `runq.c` (int8, group 64 where the shapes allow, else 32) when the
    environment variables LLAMA2C_RUN / LLAMA2C_RUNQ point at binaries you built yourself
    (e.g. `gcc -Ofast -fopenmp -march=native run.c -lm -o run`); the same weights are written in
    llama2.c's own file formats (v0 fp32 / v2 int8) by this script.
Results are printed as tok/s and as ratios against the peers of the same run.

    python3 benches/bench_engine.py --models S15,N56 --threads 1,2
Needs the reference vocabulary (--vocab, default ../shared/data/tokenizer_16384.json) and the
`nano-infer` binary (--nano-infer, default target/release/nano-infer; built with cargo if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_N56 = json.loads((ROOT / "python" / "nano" / "configs" / "model_56m.json").read_text(encoding="utf-8"))
SHAPES = {
    # name: (dim, layers, heads, kv_heads, hidden); N56 is read from its one owner, configs/model_56m.json
    "S15": (288, 6, 6, 6, 768),
    "N56": tuple(_N56[k] for k in ("n_embd", "n_layer", "n_head", "n_kv_head", "n_hidden")),
    "M110": (768, 12, 12, 12, 2048),
}
NANO_DTYPES = ("f32", "f16", "q8_0", "q4_0")
LADDER = re.compile(r"threads=(\d+) prefill=([\d.]+) tok/s decode=([\d.]+) tok/s bytes/token=(\d+) "
                    r"GB/s=([\d.]+) limit=(\d+)%")
LORA_OVERHEAD = re.compile(r"threads=(\d+) lora_overhead=(-?[\d.]+)% pairs=(\d+) \((.*)\)")


def build_model(shape: str, block_size: int, vocab: int):
    import torch
    from nano.model import ModelConfig, Transformer

    dim, layers, heads, kv_heads, hidden = SHAPES[shape]
    cfg = ModelConfig(block_size=block_size, vocab_size=vocab, n_layer=layers, n_embd=dim, n_head=heads,
                      n_kv_head=kv_heads, n_hidden=hidden)
    torch.manual_seed(0)
    return Transformer(cfg).eval()


# ---- llama2.c file formats (the formats only: headers and tensor order of its v0 and v2 files) ----

def _f32(f, arr) -> None:
    f.write(np.ascontiguousarray(arr, dtype=np.float32).tobytes())


def _layers(sd: dict, n: int, name: str) -> list:
    return [sd[f"layers.{i}.{name}"] for i in range(n)]


def write_llama2c_v0(path: Path, model) -> None:
    """fp32 file read by run.c: 7-int header, weights in its order, shared classifier."""
    c = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    L = c.n_layer
    with open(path, "wb") as f:
        f.write(struct.pack("7i", c.n_embd, c.n_hidden, L, c.n_head, c.n_kv_head, c.vocab_size, c.block_size))
        _f32(f, sd["tok_embeddings.weight"])
        for name in ("attention_norm.weight", "attention.wq.weight", "attention.wk.weight",
                     "attention.wv.weight", "attention.wo.weight", "ffn_norm.weight",
                     "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight"):
            for t in _layers(sd, L, name):
                _f32(f, t)
        _f32(f, sd["norm.weight"])
        _f32(f, np.zeros(c.block_size * c.head_dim, np.float32))  # the unused freq_cis_real/imag


def _q8_groups(w: np.ndarray, gs: int) -> tuple[np.ndarray, np.ndarray]:
    g = w.reshape(-1, gs).astype(np.float32)
    scale = np.abs(g).max(axis=1) / 127.0
    q = np.round(g / np.where(scale == 0, 1, scale)[:, None]).astype(np.int8)
    return q.reshape(-1), scale.astype(np.float32)


def write_llama2c_v2(path: Path, model, gs: int) -> None:
    """int8 file read by runq.c: 256-byte header (magic "ak42", version 2), fp32 norms, q8 tensors."""
    c = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    L = c.n_layer
    with open(path, "wb") as f:
        header = struct.pack("<Ii7iBi", 0x616B3432, 2, c.n_embd, c.n_hidden, L, c.n_head, c.n_kv_head,
                             c.vocab_size, c.block_size, 1, gs)
        f.write(header + b"\0" * (256 - len(header)))
        for name in ("attention_norm.weight", "ffn_norm.weight"):
            for t in _layers(sd, L, name):
                _f32(f, t)
        _f32(f, sd["norm.weight"])
        tensors = [sd["tok_embeddings.weight"]]
        for name in ("attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
                     "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight"):
            tensors += _layers(sd, L, name)
        for t in tensors:
            q, s = _q8_groups(t, gs)
            f.write(q.tobytes())
            _f32(f, s)


def write_llama2c_tokenizer(path: Path, vocab: int) -> None:
    """run.c's tokenizer file: <unk> <s> </s>, 256 byte tokens, " " (its encoder needs it), fillers."""
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [" "]
    pieces += [f"t{i}" for i in range(len(pieces), vocab)]
    with open(path, "wb") as f:
        f.write(struct.pack("i", 16))
        for piece in pieces[:vocab]:
            raw = piece.encode()
            f.write(struct.pack("fi", 0.0, len(raw)) + raw)


def run_llama2c(binary: str, model_path: Path, tok_path: Path, threads: int, steps: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, str(model_path), "-z", str(tok_path), "-t", "0", "-n", str(steps),
                          "-i", "hello"], env=env, capture_output=True, text=True, timeout=600)
    m = re.search(r"achieved tok/s: ([\d.]+)", out.stderr)
    if not m:
        raise RuntimeError(f"{binary} gave no tok/s: {out.stderr[-500:]}")
    return float(m.group(1))


# ---- Nano and PyTorch ----

def nano_ladder(binary: Path, model_path: Path, threads: list[int], prompt: int, decode: int,
                lora: Path | None = None, lora_pairs: int = 0) -> dict:
    """`nano-infer bench` rows per thread count; with `lora`, each row also holds the LoRA decode
    overhead that the bench measures in-process over `lora_pairs` alternating pairs."""
    cmd = [str(binary), "bench", str(model_path), "--threads", ",".join(map(str, threads)),
           "--prompt-tokens", str(prompt), "--decode-tokens", str(decode), "--repeat", "2"]
    if lora:
        cmd += ["--lora", str(lora), "--lora-pairs", str(lora_pairs)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if out.returncode:
        raise RuntimeError(out.stderr)
    rows = {}
    for line in out.stdout.splitlines():
        if m := LADDER.fullmatch(line.strip()):
            rows[int(m.group(1))] = {"line": line.strip(), "prefill": float(m.group(2)),
                                     "decode": float(m.group(3)), "limit": int(m.group(6))}
        elif m := LORA_OVERHEAD.fullmatch(line.strip()):
            rows[int(m.group(1))].update(lora_overhead=float(m.group(2)), lora_pairs=int(m.group(3)),
                                         lora_each=m.group(4))
    return rows


def random_lora(model, rank: int = 8) -> dict:
    """A rank-`rank` LoRA payload (format nano-lora) on wq/wk/wv/wo, B random (apply_lora zeroes it)."""
    import copy

    import torch
    from nano.lora import LoraConfig, apply_lora, lora_modules, lora_payload

    adapted = apply_lora(copy.deepcopy(model), LoraConfig(rank=rank, alpha=2.0 * rank))
    torch.manual_seed(1)
    with torch.no_grad():
        for m in lora_modules(adapted).values():
            m.lora_B.normal_(0, 0.02)
    return lora_payload(adapted)


def torch_speed(model, threads: int, prompt: int, decode: int, repeat: int = 2) -> tuple[float, float]:
    import torch

    torch.set_num_threads(threads)
    best_p = best_d = 0.0
    with torch.inference_mode():
        for r in range(repeat):
            g = torch.Generator().manual_seed(r)
            idx = torch.randint(7, model.config.vocab_size, (1, prompt), generator=g)
            cache = model.new_kv_cache(1, max_len=prompt + decode + 1)
            t0 = time.perf_counter()
            logits, _ = model(idx, kv_cache=cache, last_only=True)
            best_p = max(best_p, prompt / (time.perf_counter() - t0))
            tok = logits[0, -1].argmax().view(1, 1)
            t0 = time.perf_counter()
            for _ in range(decode):
                logits, _ = model(tok, kv_cache=cache, last_only=True)
                tok = logits[0, -1].argmax().view(1, 1)
            best_d = max(best_d, decode / (time.perf_counter() - t0))
    return best_p, best_d


def nano_binary(path: str | None) -> Path:
    binary = Path(path) if path else ROOT / "target" / "release" / "nano-infer"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "nano-infer"], cwd=ROOT, check=True)
    return binary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="S15,N56", help="comma-separated: " + ",".join(SHAPES))
    ap.add_argument("--dtypes", default=",".join(NANO_DTYPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens for prefill")
    ap.add_argument("--decode", type=int, default=64, help="tokens decoded")
    ap.add_argument("--block-size", type=int, default=512)
    ap.add_argument("--vocab", default=str(ROOT.parent / "shared" / "data" / "tokenizer_16384.json"))
    ap.add_argument("--workdir", default="/tmp/nano-bench")
    ap.add_argument("--nano-infer", default=None)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--lora-dtype", default="q8_0", help="dtype whose decode is measured with a rank-8 LoRA ('' = skip)")
    ap.add_argument("--lora-pairs", type=int, default=8,
                    help="alternating decode runs without / with the LoRA (in one nano-infer process) for the overhead")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file (scripts/perf_report.py)")
    args = ap.parse_args(argv)
    report: dict[str, dict] = {}

    from nano.export import export_checkpoint, export_lora
    from nano.tokenizer import Tokenizer

    threads = [int(t) for t in args.threads.split(",")]
    dtypes = args.dtypes.split(",")
    vocab_json = Path(args.vocab).read_text()
    vocab = Tokenizer.from_json(vocab_json).vocab_size
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    binary = nano_binary(args.nano_infer)
    run_c, runq_c = os.environ.get("LLAMA2C_RUN"), os.environ.get("LLAMA2C_RUNQ")

    for shape in args.models.split(","):
        model = build_model(shape, args.block_size, vocab)
        ckpt = {"tokenizer_json": vocab_json, "model_config": model.config.to_dict(), "model": model.state_dict()}
        print(f"\n## {shape} {SHAPES[shape]} vocab {vocab}, prompt {args.prompt}, decode {args.decode}")
        res: dict[tuple[str, int], dict] = {}
        for dt in dtypes:
            path = export_checkpoint(ckpt, work / f"{shape}_{dt}.bin", dtype=dt)
            for t, row in nano_ladder(binary, path, threads, args.prompt, args.decode).items():
                res[(dt, t)] = row
                print(f"nano {dt:5} {row['line']}")
            if dt == args.lora_dtype:
                lora_path = export_lora(random_lora(model), work / f"{shape}_lora8.bin")
                # Swings between separate runs can exceed the overhead itself (docs/performance.md), so the bench
                # alternates decode without / with the adapter on one engine and reports the median
                # of the pairwise slowdowns.
                rows = nano_ladder(binary, path, threads, args.prompt, args.decode, lora_path, args.lora_pairs)
                for t, row in rows.items():
                    print(f"nano {dt:5} +LoRA rank 8 (wq,wk,wv,wo) threads={t} decode overhead "
                          f"{row['lora_overhead']:.1f}% (median of {row['lora_pairs']} alternating pairs "
                          f"in one process: {row['lora_each']})")
                lora_path.unlink()
            path.unlink()
        peers: dict[tuple[str, int], float] = {}
        if not args.no_torch:
            for t in threads:
                p, d = torch_speed(model, t, args.prompt, args.decode)
                peers[("torch", t)] = d
                print(f"torch f32   threads={t} prefill={p:.1f} tok/s decode={d:.1f} tok/s")
        steps = args.prompt + args.decode
        tok_path = work / "llama2c_tokenizer.bin"
        write_llama2c_tokenizer(tok_path, vocab)
        if run_c:
            p = work / f"{shape}_llama2c_f32.bin"
            write_llama2c_v0(p, model)
            for t in threads:
                peers[("run.c", t)] = run_llama2c(run_c, p, tok_path, t, steps)
                print(f"run.c f32   threads={t} decode={peers[('run.c', t)]:.1f} tok/s")
            p.unlink()
        if runq_c:
            dim, _, _, _, hidden = SHAPES[shape]
            gs = 64 if dim % 64 == 0 and hidden % 64 == 0 else 32
            p = work / f"{shape}_llama2c_q8.bin"
            write_llama2c_v2(p, model, gs)
            for t in threads:
                peers[("runq.c", t)] = run_llama2c(runq_c, p, tok_path, t, steps)
                print(f"runq.c int8 threads={t} decode={peers[('runq.c', t)]:.1f} tok/s (group {gs})")
            p.unlink()
        print("ratios (decode tok/s, same run):")
        for t in threads:
            parts = []
            for dt in dtypes:
                if (dt, t) not in res:
                    continue
                d = res[(dt, t)]["decode"]
                vs = " ".join(f"{d / peers[(peer, t)]:.2f}x {peer}" for peer in ("torch", "run.c", "runq.c")
                              if peers.get((peer, t)))
                parts.append(f"{dt} {vs}".strip())
            if ("q4_0", t) in res and ("q8_0", t) in res:
                parts.append(f"q4_0/q8_0 {res[('q4_0', t)]['decode'] / res[('q8_0', t)]['decode']:.2f}x")
            for dt in dtypes:
                if (dt, t) in res and res[(dt, t)]["decode"]:
                    parts.append(f"prefill/decode {dt} {res[(dt, t)]['prefill'] / res[(dt, t)]['decode']:.1f}x")
            print(f"  threads={t}: " + "; ".join(parts))
        report[shape] = {
            "nano": {f"{dt}/{t}": {k: row[k] for k in ("prefill", "decode") if k in row} for (dt, t), row in res.items()},
            "peers": {f"{peer}/{t}": d for (peer, t), d in peers.items()},
        }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
