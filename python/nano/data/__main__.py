"""Command line: ``python -m nano.data shuffle|pretrain|sft ...`` (see docs/data.md)."""

from __future__ import annotations

import argparse
import json
import sys

from nano._cli import main_errors, positive_int, seed_arg, threads_arg


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nano.data", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("shuffle", help="uniformly shuffle the records (lines) of files larger than RAM")
    s.add_argument("inputs", nargs="+", metavar="IN")
    s.add_argument("-o", "--output", required=True, metavar="OUT")
    s.add_argument("--memory", default="256M", help="memory budget, e.g. 256M, 1G (default 256M)")
    s.add_argument("--seed", type=seed_arg, default=0)
    s.add_argument("--threads", type=threads_arg, default=None)
    s.add_argument("--tmp-dir", default=None, help="where temporary piles go (default: beside OUT)")
    s.add_argument("--record-size", type=positive_int, default=None, help="fixed-size binary records of N bytes")
    s.add_argument("--no-progress", action="store_true")

    def common(q):
        q.add_argument("inputs", nargs="+", metavar="IN")
        q.add_argument("-o", "--output", required=True, metavar="DIR")
        q.add_argument("--tokenizer", required=True, help="vocabulary JSON file")
        q.add_argument("--seed", type=seed_arg, default=0)
        q.add_argument("--threads", type=threads_arg, default=None)
        q.add_argument("--strict", action="store_true", help="a bad record is fatal (default: skip, count)")
        q.add_argument("--no-progress", action="store_true")

    t = sub.add_parser("pretrain", help="text files (one document per line) -> token files")
    common(t)
    t.add_argument("--val-fraction", type=float, default=0.01)
    t.add_argument("--add-bos", action="store_true", help="put <|bos|> before every document")

    f = sub.add_parser("sft", help="JSONL {question, answer} -> fixed-length samples with loss masks")
    common(f)
    f.add_argument("--block-size", type=int, required=True,
                   help="tokens per sample, 2 to 65536 (each is stored padded to this + 1)")
    f.add_argument("--val-fraction", type=float, default=0.05)
    f.add_argument("--pack", action="store_true", help="pack several samples per block")
    f.add_argument("--overlong", choices=("truncate", "drop"), default="truncate")
    return p


def _report(summary: dict) -> None:
    """Human summary on stderr; the full summary as JSON on stdout."""
    if "splits" not in summary:  # shuffle
        print(f"shuffled {summary['records']} records, {summary['bytes']} bytes", file=sys.stderr)
        print(json.dumps(summary))
        return
    for name, split in summary["splits"].items():
        print(f"{name}: " + ", ".join(f"{v} {k}" for k, v in split.items()), file=sys.stderr)
    skipped = ", ".join(f"{v} {k}" for k, v in summary["skipped"].items()) or "none"
    lines = [
        f"records in {summary['records_in']}, written {summary['records_written']}, skipped: {skipped}",
        f"tokens {summary['tokens']}, unknown-token rate {summary['unknown_rate']:.4%}",
        f"{summary['bytes_in'] / 1e6:.1f} MB in {summary['seconds']:.2f} s = {summary['mb_per_s']:.1f} MB/s",
    ]
    if summary.get("truncated"):
        lines.insert(1, f"truncated (overlong): {summary['truncated']}")
    for line in lines:
        print(line, file=sys.stderr)
    print(json.dumps(summary))


@main_errors("nano.data", code=2)
def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    progress = None if not args.no_progress else False
    if args.command == "shuffle":
        from nano.data.shuffle import shuffle

        summary = shuffle(
            args.inputs,
            args.output,
            memory=args.memory,
            seed=args.seed,
            tmp_dir=args.tmp_dir,
            threads=args.threads,
            record_size=args.record_size,
            progress=progress,
        )
    elif args.command == "pretrain":
        from nano.data.pretrain import prepare_pretrain

        summary = prepare_pretrain(
            args.inputs,
            args.output,
            args.tokenizer,
            val_fraction=args.val_fraction,
            seed=args.seed,
            add_bos=args.add_bos,
            threads=args.threads,
            strict=args.strict,
            progress=progress,
        )
    else:
        from nano.data.sft import prepare_sft

        summary = prepare_sft(
            args.inputs,
            args.output,
            args.tokenizer,
            args.block_size,
            val_fraction=args.val_fraction,
            seed=args.seed,
            pack=args.pack,
            overlong=args.overlong,
            strict=args.strict,
            threads=args.threads,
            progress=progress,
        )
    _report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
