"""Nano's engine against llama.cpp on the same weights: `nano-infer bench` on a Nano file and `llama-bench`
on the GGUF export of the same random-weight model, per dtype (f32, f16, q8_0, q4_0) and thread count.

Per cell: prefill of 128 tokens, and decode of 128 tokens after a 128-token prompt (llama-bench `-d 128`,
the context depth Nano's decode runs at). Runs are interleaved — each repetition runs every cell once,
Nano and llama.cpp back to back with their order alternating — so machine drift hits both alike; each
repetition gives one Nano/llama.cpp ratio per cell, and the table shows the median ratio (and the best
tok/s of each side).

    python3 benches/bench_llamacpp.py --shapes N56 --threads 1,2 --repeat 3
    python3 benches/bench_llamacpp.py --shapes Qwen0.5B --dtypes q8_0,q4_0
    python3 benches/bench_llamacpp.py --baseline OLD/nano-infer   # also an older Nano, interleaved

Needs llama.cpp's tools (scripts/build_llamacpp.sh; --llamacpp-bin or NANO_LLAMACPP_BIN) and `nano-infer`
(built with cargo if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPES = {
    # name: (dim, layers, heads, kv_heads, hidden, vocab, norm_eps, rope_theta)
    "N56": (512, 16, 16, 8, 1408, 16384, 1e-5, 10000.0),
    # Qwen2.5-0.5B without its q/k/v biases (Nano's engine has none; they cost nothing measurable).
    "Qwen0.5B": (896, 24, 14, 2, 4864, 151936, 1e-6, 1000000.0),
}
DTYPES = ("f32", "f16", "q8_0", "q4_0")
LADDER = re.compile(r"threads=(\d+) prefill=([\d.]+) tok/s decode=([\d.]+) tok/s")


def synthetic_tokenizer(vocab: int):
    """Special tokens, the 256 byte tokens, then fillers: a valid byte-fallback vocabulary of any size."""
    from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

    tokens = list(DEFAULT_SPECIAL_TOKENS) + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [chr(c) for c in range(32, 127)]
    tokens += [f"t{i}" for i in range(vocab - len(tokens))]
    return Tokenizer.from_tokens(tokens, [t in DEFAULT_SPECIAL_TOKENS for t in tokens])


def write_models(shape: str, dtypes: list[str], out: Path, gguf: bool = True) -> dict[str, tuple[Path, Path | None]]:
    import torch
    from nano.export import export_checkpoint, export_gguf
    from nano.model import ModelConfig, Transformer

    dim, layers, heads, kv, hidden, vocab, eps, theta = SHAPES[shape]
    cfg = ModelConfig(block_size=512, vocab_size=vocab, n_layer=layers, n_embd=dim, n_head=heads, n_kv_head=kv,
                      n_hidden=hidden, norm_eps=eps, rope_theta=theta)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    ckpt = {"model": model.state_dict(), "model_config": cfg.to_dict(),
            "tokenizer_json": synthetic_tokenizer(vocab).to_json()}
    files = {}
    for dt in dtypes:
        nano = export_checkpoint(ckpt, out / f"{shape}-{dt}.bin", dt)
        peer = export_gguf(out / f"{shape}-{dt}.gguf", checkpoint=ckpt, dtype=dt) if gguf else None
        files[dt] = (nano, peer)
    return files


def nano_run(binary: Path, model: Path, threads: int, tokens: int) -> tuple[float, float]:
    out = subprocess.run([str(binary), "bench", str(model), "--threads", str(threads), "--prompt-tokens",
                          str(tokens), "--decode-tokens", str(tokens), "--repeat", "1"],
                         capture_output=True, text=True, timeout=1800)
    m = LADDER.search(out.stdout)
    if out.returncode or not m:
        raise RuntimeError(f"nano-infer bench failed: {out.stderr[-800:]}")
    return float(m.group(2)), float(m.group(3))


def llama_run(bindir: Path, model: Path, threads: int, tokens: int) -> tuple[float, float]:
    def bench(*args) -> float:
        out = subprocess.run([str(bindir / "llama-bench"), "-m", str(model), "-t", str(threads), "-r", "1",
                              "-o", "json", *args], capture_output=True, text=True, timeout=1800)
        if out.returncode:
            raise RuntimeError(f"llama-bench failed: {out.stderr[-800:]}")
        return float(json.loads(out.stdout)[0]["avg_ts"])

    prefill = bench("-p", str(tokens), "-n", "0")
    decode = bench("-p", "0", "-n", str(tokens), "-d", str(tokens))
    return prefill, decode


def nano_binary(path: str | None) -> Path:
    binary = Path(path) if path else ROOT / "target" / "release" / "nano-infer"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "nano-infer"], cwd=ROOT, check=True)
    return binary


def llamacpp_bin(path: str | None) -> Path:
    for d in ([Path(path)] if path else []) + ([Path(os.environ["NANO_LLAMACPP_BIN"])]
                                                if "NANO_LLAMACPP_BIN" in os.environ else []) + sorted(
            (Path.home() / ".cache" / "nano-llamacpp").glob("*/bin"), reverse=True):
        if (d / "llama-bench").exists():
            return d
    sys.exit("llama.cpp tools not found: run scripts/build_llamacpp.sh or pass --llamacpp-bin")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="N56")
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--nano-infer", default=None)
    ap.add_argument("--llamacpp-bin", default=None)
    ap.add_argument("--workdir", default=None, help="where to write the model files (default: a temp dir)")
    ap.add_argument("--baseline", default=None,
                    help="another nano-infer (e.g. a build of the previous commit), run interleaved with the two "
                         "others: a second table gives Nano / baseline ratios")
    a = ap.parse_args(argv)
    binary, bindir = nano_binary(a.nano_infer), llamacpp_bin(a.llamacpp_bin)
    dtypes = a.dtypes.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        for shape in a.shapes.split(","):
            files = write_models(shape, dtypes, Path(tmp))
            # (dtype, threads) -> {"nano": [(prefill, decode)], "llama": [...]}
            who_all = ("nano", "llama", "base") if a.baseline else ("nano", "llama")
            runs: dict = {(dt, t): {w: [] for w in who_all} for dt in dtypes for t in threads}
            for rep in range(a.repeat):
                for dt in dtypes:
                    for t in threads:
                        # Each side starts a repetition in turn (machine drift hits all alike).
                        order = who_all[rep % len(who_all):] + who_all[:rep % len(who_all)]
                        for who in order:
                            if who == "nano":
                                r = nano_run(binary, files[dt][0], t, a.tokens)
                            elif who == "base":
                                r = nano_run(Path(a.baseline), files[dt][0], t, a.tokens)
                            else:
                                r = llama_run(bindir, files[dt][1], t, a.tokens)
                            runs[dt, t][who].append(r)
                        print(f"{shape} rep {rep + 1} {dt} {t}T nano {runs[dt, t]['nano'][-1]} "
                              f"llama {runs[dt, t]['llama'][-1]}", file=sys.stderr, flush=True)
            print(f"\n{shape}: Nano / llama.cpp, {a.tokens}-token prefill and decode (after a {a.tokens}-token "
                  f"prompt); median of {a.repeat} interleaved ratios; best tok/s in brackets\n")
            print("| dtype | threads | decode ratio | decode tok/s Nano / llama.cpp | prefill ratio "
                  "| prefill tok/s Nano / llama.cpp |")
            print("|---|---:|---:|---:|---:|---:|")
            for dt in dtypes:
                for t in threads:
                    n, l_ = runs[dt, t]["nano"], runs[dt, t]["llama"]
                    dec = statistics.median(x[1] / y[1] for x, y in zip(n, l_, strict=True))
                    pre = statistics.median(x[0] / y[0] for x, y in zip(n, l_, strict=True))
                    print(f"| {dt} | {t} | {dec:.2f} | {max(x[1] for x in n):.1f} / {max(y[1] for y in l_):.1f} "
                          f"| {pre:.2f} | {max(x[0] for x in n):.1f} / {max(y[0] for y in l_):.1f} |")
            if a.baseline:
                print(f"\n{shape}: Nano / baseline ({a.baseline}), same runs\n")
                print("| dtype | threads | decode ratio | decode tok/s Nano / baseline | prefill ratio "
                      "| prefill tok/s Nano / baseline |")
                print("|---|---:|---:|---:|---:|---:|")
                for dt in dtypes:
                    for t in threads:
                        n, b = runs[dt, t]["nano"], runs[dt, t]["base"]
                        dec = statistics.median(x[1] / y[1] for x, y in zip(n, b, strict=True))
                        pre = statistics.median(x[0] / y[0] for x, y in zip(n, b, strict=True))
                        print(f"| {dt} | {t} | {dec:.2f} | {max(x[1] for x in n):.1f} / {max(y[1] for y in b):.1f} "
                              f"| {pre:.2f} | {max(x[0] for x in n):.1f} / {max(y[0] for y in b):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
