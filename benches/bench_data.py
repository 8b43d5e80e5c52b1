"""Benchmark: data preparation throughput (MB/s of input text), target >= 50 MB/s on 2 cores.

Peer measured in the same run: the tokenizer alone (``encode_to_numpy`` over the same documents, already
in memory) — the floor that ``prepare_pretrain`` adds reading, splitting and writing to.

    python benches/bench_data.py [--size-mb 200] [--repeat 3] [--dir /tmp/nano-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

from nano.data import prepare_pretrain, prepare_sft
from nano.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NANO_SHARED_DATA", REPO.parent / "shared" / "data"))


def build(path: Path, names: list[str], size: int) -> None:
    if path.exists() and path.stat().st_size >= size:
        return
    data = b"".join((SHARED / n).read_bytes().rstrip(b"\n") + b"\n" for n in names)
    with open(path, "wb") as f:
        for _ in range(size // len(data) + 1):
            f.write(data)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/nano-bench")
    args = ap.parse_args()
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_file(SHARED / "tokenizer_16384.json")

    text = work / f"pretrain_{args.size_mb}m.txt"
    build(
        text,
        ["pretrain_psycho.txt", "pretrain_amateur_radio.txt", "pretrain_chinese_classic.txt"],
        args.size_mb << 20,
    )
    sft = work / "sft_20m.jsonl"
    build(sft, ["sft_amateur_radio.jsonl", "sft_self_id.jsonl"], 20 << 20)
    mb = text.stat().st_size / 1e6
    docs = [line for line in text.read_text(encoding="utf-8").splitlines() if line]
    out = work / "prepared"

    t_tok, _ = timed(lambda: tok.encode_to_numpy(docs, separator_id=3), args.repeat)
    t_prep, summary = timed(
        lambda: prepare_pretrain([text], out, tok, val_fraction=0.01, progress=False), args.repeat
    )
    sft_mb = sft.stat().st_size / 1e6
    t_sft, sft_summary = timed(
        lambda: prepare_sft([sft], out, tok, 512, pack=True, progress=False), args.repeat
    )
    shutil.rmtree(out, ignore_errors=True)

    print(f"{os.cpu_count()} cores, medians of {args.repeat}")
    print(f"  tokenizer alone (in memory)  {mb / t_tok:7.1f} MB/s   ({mb:.0f} MB, {t_tok:.2f} s)")
    print(
        f"  prepare_pretrain (file->dir) {mb / t_prep:7.1f} MB/s   ({t_prep:.2f} s, "
        f"{summary['tokens']} tokens, unknown rate {summary['unknown_rate']:.4%})   target >= 50"
    )
    print(f"  prepare_pretrain / tokenizer alone = {t_prep / t_tok:.2f}x time")
    print(
        f"  prepare_sft (pack, 512)      {sft_mb / t_sft:7.1f} MB/s   ({sft_mb:.0f} MB, {t_sft:.2f} s, "
        f"{sft_summary['records_written']} examples)"
    )


if __name__ == "__main__":
    main()
