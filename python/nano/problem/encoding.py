"""Turning task samples into model inputs, batches and greedy predictions.

Two formulations:
* causal — sequence ``question = answer``; the model is trained on next-token prediction of the answer
  tokens only (loss mask) and answers by greedy decoding, one token at a time.
* nar (non-autoregressive, full attention) — input ``question = <|mask|> ... <|mask|>``; the model predicts
  every answer token at once, at the placeholder positions.
Sequences are right-padded with <|padding|> to the model's block size.
"""

from __future__ import annotations

import random

import torch

from nano.problem.tasks import Task, draw
from nano.tokenizer import PADDING, UNKNOWN

PAD, MASK, EQUALS = PADDING, "<|mask|>", "="
SPECIALS = (PAD, UNKNOWN, MASK)  # nano's Tokenizer requires <|unknown|>; the tasks never use it
FORMULATIONS = ("causal", "nar")


class Vocab:
    """Token <-> id for one task: the specials, "=", then the task's symbols."""

    def __init__(self, task: Task):
        self.tokens = list(SPECIALS) + [EQUALS] + [s for s in task.symbols if s != EQUALS]
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.pad, self.mask, self.equals = self.ids[PAD], self.ids[MASK], self.ids[EQUALS]

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.ids[t] for t in tokens]

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def tokenizer(self):
        """The vocabulary as a nano Tokenizer (saved in checkpoints so they are self-contained)."""
        from nano.tokenizer import Tokenizer

        return Tokenizer.from_tokens(self.tokens, [t in SPECIALS for t in self.tokens])


def block_size(task: Task, formulation: str) -> int:
    """Positions the model needs: question, "=", answer (the causal input drops the last answer token)."""
    check_formulation(formulation)
    full = task.max_question_len + 1 + task.answer_len
    return full - 1 if formulation == "causal" else full


def check_formulation(formulation: str) -> None:
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {', '.join(FORMULATIONS)}, got {formulation!r}")


def encode_example(vocab: Vocab, question: list[str], answer: list[str], formulation: str,
                   length: int, intermediate: list[str | None] | None = None
                   ) -> tuple[list[int], list[int], list[float]]:
    """(x, y, mask) of one sample, each `length` long; mask is 1 where y is an answer token to learn.

    intermediate (optional, one entry per question position) adds training targets inside the question:
    the model at question position i learns to output intermediate[i] where that is not None. Question
    positions carry no other target, so this only adds supervision; the answer is scored as before.
    """
    q = vocab.encode(question) + [vocab.equals]
    a = vocab.encode(answer)
    if formulation == "causal":
        seq = q + a
        x, y = seq[:-1], seq[1:]
        mask = [0.0] * (len(q) - 1) + [1.0] * len(a)
    else:
        x = q + [vocab.mask] * len(a)
        y = [vocab.pad] * len(q) + a
        mask = [0.0] * len(q) + [1.0] * len(a)
    for i, target in enumerate(intermediate or []):
        if target is not None:
            y[i], mask[i] = vocab.ids[target], 1.0
    fill = length - len(x)
    if fill < 0:
        raise ValueError(f"sample of {len(x)} positions does not fit the block size {length}")
    return x + [vocab.pad] * fill, y + [vocab.pad] * fill, mask + [0.0] * fill


class ProblemLoader:
    """An endless stream of fresh batches from a task's training or held-out part (nano.train loader API)."""

    def __init__(self, task: Task, formulation: str, batch_size: int, seed: int, heldout: bool = False,
                 intermediate: bool = False):
        check_formulation(formulation)
        self.task, self.formulation, self.batch_size, self.heldout = task, formulation, batch_size, heldout
        self.intermediate = intermediate
        self.vocab = Vocab(task)
        self.length = block_size(task, formulation)
        self.rng = random.Random(seed)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = []
        for _ in range(self.batch_size):
            q, a = draw(self.task, self.rng, self.heldout)
            extra = self.task.intermediate(q) if self.intermediate else None
            rows.append(encode_example(self.vocab, q, a, self.formulation, self.length, extra))
        x, y, mask = (torch.tensor(col) for col in zip(*rows, strict=True))
        if self.formulation == "causal":  # trailing padding is invisible to causal attention: cut it
            width = int(mask.nonzero()[:, 1].max()) + 1  # the answer is the last trained position
            x, y, mask = x[:, :width], y[:, :width], mask[:, :width]
        return x, y, mask.float()

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["rng"])


@torch.no_grad()
def predict(model, vocab: Vocab, questions: list[list[str]], answer_len: int, formulation: str,
            batch_size: int = 500) -> list[list[str]]:
    """Greedy answers (argmax over the whole vocabulary) for the questions, answer_len tokens each."""
    check_formulation(formulation)
    model.eval()
    device = next(model.parameters()).device
    out: list[list[str]] = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        prompts = [vocab.encode(q) + [vocab.equals] for q in chunk]
        starts = torch.tensor([len(p) for p in prompts], device=device)  # first answer position
        width = max(len(p) for p in prompts) + answer_len
        if formulation == "nar":
            width = model.config.block_size  # full attention sees the padding, exactly as in training
        x = torch.full((len(chunk), width), vocab.pad, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            x[i, :len(p)] = torch.tensor(p)
        rows = torch.arange(len(chunk), device=device)
        if formulation == "nar":
            for j in range(answer_len):
                x[rows, starts + j] = vocab.mask
            logits, _ = model(x)
            for j in range(answer_len):
                x[rows, starts + j] = logits[rows, starts + j].argmax(-1)
        else:
            # causal attention: later (still padded) positions cannot influence earlier ones, so one padded
            # batch decodes every row; step j reads the logits before the answer slot j
            for j in range(answer_len):
                logits, _ = model(x[:, : int(starts.max()) + j])
                x[rows, starts + j] = logits[rows, starts + j - 1].argmax(-1)
        for i in range(len(chunk)):
            s = int(starts[i])
            out.append(vocab.decode(x[i, s:s + answer_len].tolist()))
    return out
