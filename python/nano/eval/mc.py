"""``mc``: multiple-choice exams scored by the log-likelihood of each option after the question.

For each question every option is scored as a continuation of the prompt (nano.eval.scoring.loglikelihood);
the prediction is the option with the highest log-likelihood (``acc``) or the highest log-likelihood per
character of the option (``acc_norm``: lm-eval's ``acc_norm``, which divides by the option's length in
characters so long options are not penalised for having more tokens). Ties go to the first option in the
order shown, which is why options are shuffled by default (seeded per question): the exam bank always
lists the correct option first.

Prompts. Plain (lm-eval's layout): ``<|eos|>`` then the shots, each ``question + delimiter + answer``
followed by ``"\\n\\n"``, then the question; the continuation is ``delimiter + option`` (delimiter: one space
by default, as lm-eval's ``target_delimiter``). Instruct (the SFT template of docs/data.md): each shot
``<|instruct_mark|> question <|response_mark|> answer <|eos|>``, then ``<|instruct_mark|> question
<|response_mark|>``; the continuation is the option.

Shots are k questions drawn (seeded per question) from ``shots_from`` (another file, e.g. C-Eval's dev
split), or from the exam itself leaving out the question being asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from nano.engine import Engine
from nano.eval.exams import Question
from nano.eval.report import progress
from nano.eval.scoring import encode_pair, loglikelihood, open_engine, special_id
from nano.eval.stats import wilson_interval
from nano.tokenizer import EOS, INSTRUCT_MARK, RESPONSE_MARK

__all__ = ["McSettings", "Prompt", "build_prompts", "score_prompts", "multiple_choice", "summarize_mc"]


@dataclass(frozen=True)
class McSettings:
    shots: int = 0
    seed: int = 0
    shuffle: bool = True
    instruct: bool = False
    delimiter: str = " "  # between question and option in plain prompts (lm-eval's target_delimiter)
    fewshot_delimiter: str = "\n\n"
    skip_images: bool = False  # leave out exam-bank questions that refer to a figure


@dataclass(frozen=True)
class Prompt:
    """One question as it is scored: the context and each option as texts (plain) or ids."""
    id: str
    context: str  # the prompt text (plain mode); shots and question joined as described in the module doc
    options: tuple[str, ...]  # the options in the order shown
    continuations: tuple[str, ...]  # what is scored after the context (delimiter + option in plain mode)
    answer: int  # index of the correct option in ``options``
    order: tuple[int, ...]  # order[j] = index in the original question of the j-th option shown
    question: Question
    shots: tuple[Question, ...]


def _shots(questions: Sequence[Question], index: int, pool: Sequence[Question], same_file: bool,
           settings: McSettings) -> list[Question]:
    if settings.shots == 0:
        return []
    candidates = [j for j in range(len(pool)) if not (same_file and j == index)]
    if len(candidates) < settings.shots:
        raise ValueError(f"{settings.shots}-shot needs {settings.shots} other questions; there are {len(candidates)}")
    rng = np.random.default_rng([settings.seed, index, 1])
    return [pool[j] for j in rng.choice(candidates, size=settings.shots, replace=False)]


def build_prompts(questions: Sequence[Question], settings: McSettings = McSettings(),
                  shots_from: Sequence[Question] | None = None) -> list[Prompt]:
    """The prompts of an exam (texts only; tokens come later), in the exam's order."""
    if settings.shots < 0:
        raise ValueError(f"shots must be >= 0, got {settings.shots}")
    pool = questions if shots_from is None else shots_from
    prompts = []
    for i, q in enumerate(questions):
        if settings.skip_images and q.image:
            continue
        order = list(range(len(q.options)))
        if settings.shuffle:
            order = [int(j) for j in np.random.default_rng([settings.seed, i, 0]).permutation(len(q.options))]
        options = tuple(q.options[j] for j in order)
        shots = _shots(questions, i, pool, shots_from is None, settings)
        if settings.instruct:
            # the template is assembled from ids in _context_ids; the text form is for reading only
            context = "".join(f"<|instruct_mark|>{s.question}<|response_mark|>{s.options[s.answer]}<|eos|>"
                              for s in shots) + f"<|instruct_mark|>{q.question}<|response_mark|>"
            continuations = options
        else:
            examples = [s.question + settings.delimiter + s.options[s.answer] for s in shots]
            head = settings.fewshot_delimiter.join(examples) + settings.fewshot_delimiter if shots else ""
            context = head + q.question
            continuations = tuple(settings.delimiter + o for o in options)
        prompts.append(Prompt(id=q.id, context=context, options=options, continuations=continuations,
                              answer=order.index(q.answer), order=tuple(order), question=q,
                              shots=tuple(shots)))
    return prompts


def _pair_ids(engine: Engine, p: Prompt, j: int, instruct: bool) -> tuple[list[int], list[int]]:
    if not instruct:
        return encode_pair(engine, p.context, p.continuations[j])
    tok = engine.tokenizer
    im, rm, eos = (special_id(engine, n) for n in (INSTRUCT_MARK, RESPONSE_MARK, EOS))
    ids = []
    for s in p.shots:
        ids += [im, *tok.encode(s.question), rm, *tok.encode(s.options[s.answer]), eos]
    ids += [im, *tok.encode(p.question.question), rm]
    return ids, tok.encode(p.continuations[j])


def score_prompts(engine: Engine, prompts: Sequence[Prompt], instruct: bool = False,
                  show_progress: bool = True) -> list[list[float]]:
    """Log-likelihood of every option of every prompt."""
    out = []
    with progress(sum(len(p.options) for p in prompts), "mc", show_progress, unit="opt") as bar:
        for p in prompts:
            row = []
            for j in range(len(p.options)):
                context, continuation = _pair_ids(engine, p, j, instruct)
                row.append(loglikelihood(engine, context, continuation)[0])
                bar.update(1)
            out.append(row)
    return out


def summarize_mc(prompts: Sequence[Prompt], lls: Sequence[Sequence[float]]) -> dict:
    """acc, acc_norm and acc_bytes (lm-eval's definitions: the largest log-likelihood, per character, per
UTF-8 byte of the option; ties to the first) with Wilson 95 % intervals, and the chance level."""
    n = len(prompts)
    if n == 0:
        raise ValueError("no questions to score")
    items, correct, correct_norm, correct_bytes = [], 0, 0, 0
    for p, row in zip(prompts, lls, strict=True):
        row = np.asarray(row, dtype=np.float64)
        chars = np.array([float(len(o)) for o in p.options])
        nbytes = np.array([float(len(o.encode("utf-8"))) for o in p.options])
        pred, pred_norm, pred_bytes = (int(np.argmax(x)) for x in (row, row / chars, row / nbytes))
        correct += pred == p.answer
        correct_norm += pred_norm == p.answer
        correct_bytes += pred_bytes == p.answer
        items.append({"id": p.id, "answer": p.answer, "order": list(p.order), "loglikelihoods": row.tolist(),
                      "pred": pred, "pred_norm": pred_norm})
    return {
        "n": n,
        "acc": correct / n,
        "acc_ci95": list(wilson_interval(correct, n)),
        "acc_norm": correct_norm / n,
        "acc_norm_ci95": list(wilson_interval(correct_norm, n)),
        "acc_bytes": correct_bytes / n,
        "chance": float(np.mean([1.0 / len(p.options) for p in prompts])),
        "correct": correct,
        "correct_norm": correct_norm,
        "items": items,
    }


def multiple_choice(model, questions: Sequence[Question], settings: McSettings = McSettings(), *,
                    shots_from: Sequence[Question] | None = None, threads: int | None = None,
                    show_progress: bool = True) -> dict:
    """Score an exam (questions from nano.eval.exams.load_exam) on the native engine; see the module doc."""
    engine = open_engine(model, threads)
    prompts = build_prompts(questions, settings, shots_from)
    lls = score_prompts(engine, prompts, settings.instruct, show_progress)
    report = summarize_mc(prompts, lls)
    report["settings"] = {"model": engine.path, **asdict(settings)}
    return report
