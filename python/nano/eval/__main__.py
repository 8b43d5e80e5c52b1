"""Command line of nano.eval (see the package doc and docs/evaluation.md)."""

from __future__ import annotations

import argparse
import sys

from nano._cli import bounded_int, main_errors, positive_int, seed_arg, threads_arg
from nano.tokenizer import EOS, read_corpus


def _read_texts(paths: list[str], max_chars: int | None) -> list[str]:
    texts = [read_corpus(p) for p in paths]
    if max_chars is not None:
        texts = [t[:max_chars] for t in texts]
    return texts


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=threads_arg, default=None, help="engine threads (default: performance cores)")
    p.add_argument("--json", metavar="OUT", help="write the full report here (atomically)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _windows(p: argparse.ArgumentParser) -> None:
    p.add_argument("texts", nargs="+", metavar="TEXT", help="UTF-8 text files (.jsonl: the records' strings), "
                   "each one document")
    p.add_argument("--context", type=positive_int, default=None, help="tokens per window (default: the block size)")
    p.add_argument("--stride", type=positive_int, default=None, help="new tokens scored per window (default: context/2)")
    p.add_argument("--start", default=EOS, help="special token put before each text (default <|eos|>)")
    p.add_argument("--max-chars", type=positive_int, default=None, help="use only the first N characters of each text")


def parser() -> argparse.ArgumentParser:
    import nano.eval

    ap = argparse.ArgumentParser(prog="python -m nano.eval", description=nano.eval.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ppl", help="perplexity, bits per character and per byte over sliding windows")
    p.add_argument("model", help="model file (.bin)")
    _windows(p)
    _common(p)

    p = sub.add_parser("kl", help="KL divergence of MODEL from BASE per token, top-1 agreement, delta ppl")
    p.add_argument("base", help="reference model file (e.g. the f32 export)")
    p.add_argument("model", help="model file compared with it (e.g. the q8_0 export)")
    _windows(p)
    _common(p)

    p = sub.add_parser("mc", help="multiple-choice exam by option log-likelihood (acc, acc_norm)")
    p.add_argument("model", help="model file (.bin)")
    p.add_argument("exam", help="exam file: exam-bank .txt, C-Eval/CMMLU .csv, or .jsonl")
    p.add_argument("--lora", help="LoRA plug-in to load first")
    p.add_argument("--shots", type=bounded_int(0, 64), default=0, help="solved examples before each question (default 0)")
    p.add_argument("--shots-from", help="exam file the examples come from (default: the exam, minus the question)")
    p.add_argument("--instruct", action="store_true", help="wrap questions in the SFT instruction template")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the option shuffle and the shot draw")
    p.add_argument("--no-shuffle", action="store_true", help="keep the options in the file's order")
    p.add_argument("--delimiter", default=" ", help="text between question and option in plain prompts")
    p.add_argument("--skip-images", action="store_true", help="leave out questions that refer to a figure")
    p.add_argument("--limit", type=positive_int, default=None, help="score only the first N questions")
    _common(p)

    sub.add_parser("lm-eval", help="run lm-evaluation-harness with the 'nano' model registered "
                   "(all further arguments go to lm_eval)", add_help=False)
    return ap


def _print(report: dict, keys: list[str]) -> None:
    for k in keys:
        v = report[k]
        print(f"{k:>16}: {v:.6g}" if isinstance(v, float) else f"{k:>16}: {v}")


@main_errors("nano.eval", code=2)
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["lm-eval"]:
        try:
            from nano.eval.harness import run_lm_eval
        except ModuleNotFoundError as e:
            if e.name is None or not e.name.startswith("lm_eval"):
                raise
            print("nano.eval: error: lm-eval is not installed (python -m pip install lm-eval)", file=sys.stderr)
            return 2
        return run_lm_eval(argv[1:])
    args = parser().parse_args(argv)
    show = not args.no_progress
    if args.json:
        from nano.eval.report import check_report_path

        inputs = [args.model, *getattr(args, "texts", []), getattr(args, "base", None), getattr(args, "exam", None),
                  getattr(args, "lora", None), getattr(args, "shots_from", None)]
        check_report_path(args.json, [i for i in inputs if i])
    if args.command == "ppl":
        from nano.eval.ppl import perplexity

        report = perplexity(args.model, _read_texts(args.texts, args.max_chars), context=args.context,
                            stride=args.stride, start=args.start, threads=args.threads, show_progress=show,
                            names=args.texts)
        report["settings"]["max_chars"] = args.max_chars
        _print(report["total"], ["tokens", "chars", "bytes", "ppl", "bits_per_char", "bits_per_byte",
                                 "unknown_tokens"])
    elif args.command == "kl":
        from nano.eval.kl import kl_divergence

        report = kl_divergence(args.base, args.model, _read_texts(args.texts, args.max_chars),
                               context=args.context, stride=args.stride, start=args.start,
                               threads=args.threads, show_progress=show)
        report["settings"].update(texts=args.texts, max_chars=args.max_chars)
        _print(report, ["tokens", "kl_mean", "kl_median", "kl_p99", "kl_max", "top1_agreement", "ppl_base",
                        "ppl_model", "delta_ppl"])
    else:
        from nano.eval.exams import load_exam
        from nano.eval.mc import McSettings, multiple_choice
        from nano.eval.scoring import open_engine

        questions = load_exam(args.exam)
        if args.limit is not None:
            questions = questions[:args.limit]
        shots_from = load_exam(args.shots_from) if args.shots_from else None
        settings = McSettings(shots=args.shots, seed=args.seed, shuffle=not args.no_shuffle,
                              instruct=args.instruct, delimiter=args.delimiter, skip_images=args.skip_images)
        engine = open_engine(args.model, args.threads)
        if args.lora:
            engine.load_lora(args.lora)
        report = multiple_choice(engine, questions, settings, shots_from=shots_from, show_progress=show)
        report["settings"].update(exam=args.exam, lora=args.lora, shots_from=args.shots_from)
        _print(report, ["n", "acc", "acc_norm", "chance"])
        lo, hi = report["acc_ci95"]
        print(f"{'acc 95% CI':>16}: [{lo:.4f}, {hi:.4f}]")
        lo, hi = report["acc_norm_ci95"]
        print(f"{'acc_norm 95% CI':>16}: [{lo:.4f}, {hi:.4f}]")
    if args.json:
        from nano.eval.report import write_json

        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
