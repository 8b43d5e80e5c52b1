"""Evaluation on the native engine: perplexity and bits per character (``ppl``), drift from a base model
(``kl``), multiple-choice exams (``mc``), and an lm-evaluation-harness adapter (nano.eval.harness).

    python -m nano.eval ppl MODEL TEXT... [--context N] [--stride N] [--json OUT]
    python -m nano.eval kl BASE MODEL TEXT... [--json OUT]
    python -m nano.eval mc MODEL EXAM [--shots K] [--instruct] [--seed S] [--json OUT]
    python -m nano.eval lm-eval --model nano --model_args path=MODEL --tasks ...

See docs/evaluation.md.
"""

from nano.eval.exams import Question, load_exam
from nano.eval.kl import kl_divergence
from nano.eval.mc import McSettings, multiple_choice
from nano.eval.ppl import perplexity
from nano.eval.stats import wilson_interval

__all__ = ["perplexity", "kl_divergence", "multiple_choice", "McSettings", "Question", "load_exam",
           "wilson_interval"]
