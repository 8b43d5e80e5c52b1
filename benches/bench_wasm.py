"""WASM decode speed in headless Chromium vs the native engine on one thread, same model, same run.

    python benches/bench_wasm.py [--dtypes f32,q8_0] [--tokens 128] [--repeats 3] [--small]

Builds a randomly initialised Llama-style model (speed does not depend on the weights' values; ~15M
parameters like the original project's smallest model, or a tiny one with --small), exports it with
nano.export, then measures greedy decoding: the page in Debian's headless Chromium (the WASM engine in
its Web Worker, one thread, the relaxed-SIMD build where Chromium validates it, else SIMD128) and nano.Engine(threads=1) (the native build). Decode tokens/s =
(generated - 1) / time from the first new token to the last, median of the repeats; prints the ratio.
On a busy machine wall-clock rates swing with the load, so it also prints tokens per CPU second of the
engine's thread (native: this process's CPU time; WASM: Chromium's DedicatedWorker thread, from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import web_harness as wh  # noqa: E402

PROMPT = wh.TEXT[:8]


def bench_model(out_dir: Path, dtype: str, small: bool) -> Path:
    shared_vocab = REPO.parent / "shared" / "data" / "tokenizer_16384.json"
    vocab = shared_vocab if shared_vocab.exists() and not small else wh.VOCAB
    dims = dict(n_layer=2, n_embd=64, n_head=4, n_hidden=192) if small else {}
    path = wh.random_model(out_dir / f"bench-{dtype}.bin", vocab, dtype, **dims)
    print(f"model: {path.name} ({'tiny' if small else '6 layers x 288, ~11M parameters'}), "
          f"vocabulary {vocab.name}, {path.stat().st_size / 2**20:.1f} MiB", flush=True)
    return path


def native_run(engine, tokens: int) -> tuple[float, float, int]:
    """(decode tokens/s by wall clock, generated tokens per CPU second, generated tokens)."""
    cpu0 = time.process_time()  # the engine's one worker thread; Python only waits for pieces
    it = engine.generate(PROMPT, max_new_tokens=tokens, temperature=0.0)
    for _piece in it:
        pass
    cpu = time.process_time() - cpu0
    generated, secs = int(it.stats["generated_tokens"]), float(it.stats["decode_secs"])
    return ((generated - 1) / secs if generated > 1 and secs > 0 else 0.0), generated / cpu, generated


def worker_cpu_secs() -> float:
    """CPU seconds used so far by Chromium's Web Worker threads (where the WASM engine runs): the
    scheduler's nanosecond run time (/proc/.../schedstat) where available, else utime + stime in clock
    ticks (10 ms steps: too coarse for short runs). Threads may exit while being read: skipped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            task = Path("/proc", pid, "task", tid)
            try:
                if not (task / "comm").read_text().startswith("DedicatedWorker"):
                    continue
                try:
                    total += int((task / "schedstat").read_text().split()[0]) / 1e9
                except (OSError, IndexError, ValueError):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
    return total


def load_in_page(page, path: Path, tokens: int) -> None:
    page.set_input_files("#model-file", files=[str(path)])
    wh.wait_idle(page)
    error = wh.page_error(page)
    if error:
        raise SystemExit(f"the page could not load {path.name}: {error}")
    wh.set_options(page, max_new_tokens=tokens)


def measure(page, path: Path, tokens: int, repeats: int) -> dict:
    """Alternates native and WASM runs (so load changes on a shared machine hit both alike); the first
    pair warms up and is not counted. Also checks that both produced the same greedy text."""
    from nano.engine import Engine

    engine = Engine(path, threads=1)
    load_in_page(page, path, tokens)
    native, wasm, native_cpu, wasm_cpu, generated = [], [], [], [], 0
    for _ in range(repeats + 1):
        rate, per_cpu, generated = native_run(engine, tokens)
        native.append(rate)
        native_cpu.append(per_cpu)
        cpu0 = worker_cpu_secs()
        text, stats = wh.generate(page, PROMPT)
        cpu = worker_cpu_secs() - cpu0
        wasm.append(stats["tokens_per_sec"])
        wasm_cpu.append(generated / cpu if cpu > 0 else float("nan"))
    same = text == "".join(engine.generate(PROMPT, max_new_tokens=tokens, temperature=0.0))
    return {"native": native[1:], "wasm": wasm[1:], "native_cpu": native_cpu[1:], "wasm_cpu": wasm_cpu[1:],
            "generated": generated, "same": same}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="f32,q8_0")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a tiny model (quick smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    why = wh.missing_requirements()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2

    results = []
    with tempfile.TemporaryDirectory() as tmp, wh.serve_page() as url, wh.browser_page(url) as (page, log):
        version = wh.open_page(page, url)
        simd = page.get_attribute("#engine-status", "data-simd")
        print(f"WASM engine {version} ({simd} build) in {wh.chromium_path()} (headless); "
              "native nano.Engine(threads=1)")
        for dtype in args.dtypes.split(","):
            path = bench_model(Path(tmp), dtype, args.small)
            m = measure(page, path, args.tokens, args.repeats)
            row = {"dtype": dtype, "generated_tokens": m["generated"], "same_text": m["same"]}
            for key in ("wasm", "native", "wasm_cpu", "native_cpu"):
                row[key] = statistics.median(m[key])
            row["ratio_wall"] = row["wasm"] / row["native"] if row["native"] else 0.0
            row["ratio_cpu"] = row["wasm_cpu"] / row["native_cpu"] if row["native_cpu"] else 0.0
            results.append(row)
            print(f"{dtype:>5}: decode tok/s (wall)  WASM {row['wasm']:8.1f}  native-1T {row['native']:8.1f}  "
                  f"WASM/native {row['ratio_wall']:.2f}\n"
                  f"       tokens per CPU-s    WASM {row['wasm_cpu']:8.1f}  native-1T {row['native_cpu']:8.1f}  "
                  f"WASM/native {row['ratio_cpu']:.2f}   ({m['generated']} tokens, median of {args.repeats}, "
                  f"same text: {m['same']})", flush=True)
        off = log.off_loopback()
        if off:
            print(f"warning: requests left 127.0.0.1: {off}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
