"""Measure the engine and print the dated section of docs/performance.md ("Measurements") in Markdown.

    python3 scripts/perf_report.py                                   # N56, 1 and 2 threads, 5 runs
    python3 scripts/perf_report.py --models N56,S15,M110 --runs 10   # what the current section used
    LLAMA2C_RUN=path/run LLAMA2C_RUNQ=path/runq python3 scripts/perf_report.py   # with llama2.c as peers

Runs ``benches/bench_engine.py`` ``--runs`` times (random-weight models in each shape, every dtype, against
PyTorch CPU and, where given, llama2.c on the same weights) and prints, for each model and thread count, the
median decode tok/s (prefill in brackets) over the runs, stamped with the date, the commit, the CPU and the
command. Paste the output over the "Measurements" section; figures belong there and nowhere else.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ("f32", "f16", "q8_0", "q4_0")
PEERS = (("torch", "PyTorch f32"), ("run.c", "`run.c` f32"), ("runq.c", "`runq.c` int8"))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def median_cell(runs: list[dict], shape: str, key: str, side: str) -> str:
    values = [r[shape][side][key] for r in runs if key in r.get(shape, {}).get(side, {})]
    if not values:
        return "–"
    if side == "peers":
        return f"{statistics.median(values):.1f}"
    decode = statistics.median(v["decode"] for v in values)
    prefill = statistics.median(v["prefill"] for v in values)
    return f"{decode:.1f} ({prefill:.0f})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="N56")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bench-args", default="", help="extra arguments for benches/bench_engine.py")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    started = datetime.datetime.now(datetime.timezone.utc)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, str(ROOT / "benches" / "bench_engine.py"), "--models", args.models,
                   "--threads", args.threads, "--json", str(out), *args.bench_args.split()]
            subprocess.run(cmd, check=True, stdout=sys.stderr)
            runs.append(json.loads(out.read_text(encoding="utf-8")))
    peers = [(key, name) for key, name in PEERS if any(f"{key}/" in k for r in runs for s in r.values()
                                                         for k in s["peers"])]
    command = " ".join(["python3 scripts/perf_report.py", *(argv if argv is not None else sys.argv[1:])])
    print("## Measurements\n")
    print(f"Measured {started:%Y-%m-%d} on code `{commit()}` by `{command}` on {cpu_name()}, {os.cpu_count()} logical CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the start ({started:%H:%M} UTC). Random weights; medians of "
          f"{args.runs} runs of `benches/bench_engine.py`; decode tok/s, prefill tok/s in brackets.\n")
    print("| model | threads | " + " | ".join(f"Nano {d}" for d in DTYPES) + "".join(f" | {n}" for _, n in peers)
          + " |")
    print("|---|---|" + "---|" * (len(DTYPES) + len(peers)))
    for shape in args.models.split(","):
        for t in args.threads.split(","):
            cells = [median_cell(runs, shape, f"{d}/{t}", "nano") for d in DTYPES]
            cells += [median_cell(runs, shape, f"{k}/{t}", "peers") for k, _ in peers]
            print(f"| {shape} | {t} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
