"""Benchmark: shuffle a >= 1 GiB line file with a budget of a quarter of its size.

Peers, measured in the same run on the same file: `cat FILE > OUT` (the I/O floor; a two-pass shuffle
costs at least 2x), GNU `shuf` (everything in RAM) and terashuf (the usual out-of-core shuffler; set
TERASHUF to its binary, built locally from its public source — it is skipped when absent).
Prints median wall time, median CPU time (user + sys) and peak RSS per tool, and the ratios the issue
targets. The machine may be shared: the CPU times tell a busy machine from a slow tool.

    python benches/bench_shuffle.py [--size-mb 1024] [--repeat 3] [--dir /tmp/nano-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NANO_SHARED_DATA", REPO.parent / "shared" / "data"))
SOURCES = [
    "pretrain_psycho.txt",
    "pretrain_amateur_radio.txt",
    "pretrain_chinese_classic.txt",
    "sft_amateur_radio.jsonl",
    "sft_self_id.jsonl",
]


def build_input(path: Path, size: int) -> None:
    """Lines of the shared corpora, repeated (each copy numbered so lines stay distinct) up to size."""
    if path.exists() and path.stat().st_size >= size:
        return
    lines = []
    for name in SOURCES:
        lines += [line for line in (SHARED / name).read_bytes().splitlines() if line]
    tmp = path.with_suffix(".partial")
    written, copy = 0, 0
    with open(tmp, "wb") as f:
        while written < size:
            block = b"".join(b"%d\t%s\n" % (copy, line) for line in lines)
            f.write(block)
            written += len(block)
            copy += 1
    tmp.rename(path)


def run(cmd: list[str], stdin=None, stdout=None, env=None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (bytes) and CPU seconds (user + sys) of one command."""
    fin = open(stdin, "rb") if stdin else None
    fout = open(stdout, "wb") if stdout else None
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for f in (fin, fout):
            if f:
                f.close()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="input size in MiB (default 1024)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/nano-bench")
    args = ap.parse_args()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"lines_{args.size_mb}m.txt"
    build_input(src, args.size_mb << 20)
    size = src.stat().st_size
    budget = size // 4
    out = work / "out.txt"
    tmp = work / "tmp"
    tmp.mkdir(exist_ok=True)
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache

    tools: dict[str, dict] = {
        "cat": {"cmd": ["cat", str(src)], "stdout": out},
        "nano": {
            "cmd": [
                sys.executable,
                "-m",
                "nano.data",
                "shuffle",
                str(src),
                "-o",
                str(out),
                "--memory",
                str(budget),
                "--tmp-dir",
                str(tmp),
                "--no-progress",
            ],
        },
        "shuf": {"cmd": ["shuf", str(src), "-o", str(out)]},
    }
    terashuf = os.environ.get("TERASHUF")
    if terashuf and Path(terashuf).exists():
        env = {**os.environ, "MEMORY": f"{budget / 1e9:.4f}", "TMPDIR": str(tmp), "SEED": "1"}
        tools["terashuf"] = {"cmd": [terashuf], "stdin": src, "stdout": out, "env": env}
    else:
        print("terashuf: skipped (set TERASHUF to a locally built binary)")

    results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in tools}
    for _ in range(args.repeat):
        for name, t in tools.items():
            results[name].append(
                run(t["cmd"], stdin=t.get("stdin"), stdout=t.get("stdout"), env=t.get("env"))
            )
            assert out.stat().st_size >= size
            out.unlink()
    shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"input {size / 2**20:.0f} MiB ({src}), budget {budget / 2**20:.0f} MiB, "
        f"{args.repeat} runs, medians; {os.cpu_count()} cores"
    )
    med, med_cpu = {}, {}
    for name, rs in results.items():
        secs = statistics.median(r[0] for r in rs)
        rss = max(r[1] for r in rs)
        cpu = statistics.median(r[2] for r in rs)
        med[name], med_cpu[name] = secs, cpu
        print(
            f"  {name:9s} {secs:7.2f} s   CPU {cpu:6.2f} s   peak RSS {rss / 2**20:7.0f} MiB   "
            f"(wall {', '.join(f'{r[0]:.2f}' for r in rs)})"
        )
    nano_rss = max(r[1] for r in results["nano"])
    print(f"nano / cat      = {med['nano'] / med['cat']:.2f}x   (target <= 3)")
    print(f"shuf / nano     = {med['shuf'] / med['nano']:.2f}x   (target >= 1.5)")
    if "terashuf" in med:
        print(f"terashuf / nano = {med['terashuf'] / med['nano']:.2f}x   (target >= 2)")
    print(f"nano peak RSS - budget = {(nano_rss - budget) / 2**20:.0f} MiB   (target <= 64)")
    # CPU-time ratios: less sensitive than wall times to other load on a shared machine.
    print(
        f"CPU time: nano / cat = {med_cpu['nano'] / med_cpu['cat']:.2f}x, "
        f"shuf / nano = {med_cpu['shuf'] / med_cpu['nano']:.2f}x"
        + (
            f", terashuf / nano = {med_cpu['terashuf'] / med_cpu['nano']:.2f}x"
            if "terashuf" in med_cpu
            else ""
        )
    )


if __name__ == "__main__":
    main()
