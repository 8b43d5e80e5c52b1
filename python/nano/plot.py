"""``python -m nano.plot LOG [-o OUT.png]``: train and validation loss against step, from a metrics log.

LOG is the trainer's JSONL metrics file (one object per line with "step", "split", "loss"), or a CSV file
with the same columns.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def read_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{split: [(step, loss), ...]} from a JSONL or CSV metrics log."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        if path.suffix == ".csv":
            rows = list(csv.DictReader(f))
        else:
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{n}: not JSON ({e})") from None
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row.get("loss") in (None, ""):
            continue
        series.setdefault(row.get("split") or "train", []).append((int(row["step"]), float(row["loss"])))
    if not series:
        raise ValueError(f"{path}: no loss records")
    return series


def plot(log: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    series = read_log(log)
    out = Path(out) if out else Path(log).with_suffix(".png")
    fig, ax = plt.subplots(figsize=(8, 5))
    for split, points in sorted(series.items(), key=lambda kv: kv[0] != "train"):
        steps, losses = zip(*sorted(points), strict=True)
        ax.plot(steps, losses, label=split, marker="o" if split != "train" else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(Path(log).name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nano.plot", description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="metrics log (metrics.jsonl or .csv)")
    ap.add_argument("-o", "--out", help="PNG to write (default: the log's name with .png)")
    args = ap.parse_args(argv)
    try:
        print(plot(args.log, args.out))
        return 0
    except (ValueError, OSError) as e:
        print(f"nano.plot: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
