"""``python -m nano.problem TASK [options]``: train on a toy task and print its exact-match accuracy."""

from __future__ import annotations

import argparse
import sys

from nano._cli import MAX_THREADS, MAX_TRAIN_SEED, bounded_int, main_errors, positive_int
from nano.problem.runner import plot_curves, solve, write_report
from nano.problem.tasks import TASKS


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m nano.problem", description=__doc__.split(":")[1].strip())
    p.add_argument("task", choices=sorted(TASKS), help="q, sort, reverse, bool or add (see docs/problems.md)")
    p.add_argument("--quick", action="store_true", help="small preset that trains in about a minute on CPU")
    p.add_argument("--formulation", choices=("causal", "nar"),
                   help="causal: greedy decoding; nar: full attention, all answer tokens at once")
    p.add_argument("--intermediate", action=argparse.BooleanOptionalAction, default=None,
                   help="also train on intermediate results inside the question (bool: each sub-expression's "
                        "value at its closing bracket); the answer is still one greedy token")
    p.add_argument("--seed", type=bounded_int(0, MAX_TRAIN_SEED), default=0)
    p.add_argument("--steps", type=positive_int, help="optimizer steps (default: the preset's)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--n-layer", type=positive_int)
    p.add_argument("--n-embd", type=positive_int)
    p.add_argument("--n-head", type=positive_int)
    p.add_argument("--n-hidden", type=positive_int)
    p.add_argument("--length", type=positive_int, help="digits per number (q, sort, reverse, add)")
    p.add_argument("--depth", type=positive_int, help="maximum expression depth (bool)")
    p.add_argument("--eval-samples", type=bounded_int(1, 10_000_000), default=10_000, help="held-out samples to score")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, ...")
    p.add_argument("--threads", type=bounded_int(0, MAX_THREADS), default=1,
                   help="torch CPU threads (default 1: tiny models run fastest single-threaded; 0 = torch's choice)")
    p.add_argument("--out", default=None, help="run directory (default runs/problem/TASK)")
    p.add_argument("--report", help="write the result as JSON here")
    p.add_argument("--plot", help="write the training curve PNG here")
    p.add_argument("--quiet", action="store_true", help="no progress bar or training log")
    return p.parse_args(argv)


@main_errors("nano.problem", code=1)
def main(argv=None) -> int:
    args = parse_args(argv)
    task_params = {"length": args.length} if args.task != "bool" else {"depth": args.depth}
    if args.task == "bool" and args.length is not None or args.task != "bool" and args.depth is not None:
        print("nano.problem: --length is for q/sort/reverse/add, --depth for bool", file=sys.stderr)
        return 2
    report = solve(args.task, quick=args.quick, seed=args.seed, eval_samples=args.eval_samples,
                   out_dir=args.out or f"runs/problem/{args.task}", device=args.device, log=not args.quiet,
                   task_params=task_params, threads=args.threads or None, formulation=args.formulation,
                   intermediate=args.intermediate, steps=args.steps,
                   batch_size=args.batch_size, lr=args.lr, n_layer=args.n_layer, n_embd=args.n_embd,
                   n_head=args.n_head, n_hidden=args.n_hidden)
    if args.report:
        write_report(report, args.report)
    if args.plot:
        plot_curves(report, args.plot)
    print(report["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
