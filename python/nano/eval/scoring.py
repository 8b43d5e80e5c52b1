"""Log-likelihoods on the native engine: opening a model, start tokens, and the (context, continuation)
score that ``mc`` and the lm-eval adapter share (so both give the same numbers by construction)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from nano.engine import Engine
from nano.eval.windows import sliding_windows
from nano.tokenizer import EOS

__all__ = ["open_engine", "special_id", "loglikelihood"]


def open_engine(model, threads: int | None = None, kv_cache: str = "f32") -> Engine:
    """``model`` as an Engine: an Engine is returned as it is, a path is loaded."""
    if isinstance(model, Engine):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a model file path or a nano.Engine, got {type(model).__name__}")
    return Engine(model, threads=threads, kv_cache=kv_cache)


def special_id(engine: Engine, name: str) -> int:
    """The id of a special token of the engine's vocabulary, refused clearly when it is missing."""
    tok = engine.tokenizer
    i = tok.token_to_id(name)
    if i is None or not tok.is_special(i):
        raise ValueError(f"the model's vocabulary has no special token {name}")
    return i


def loglikelihood(engine: Engine, context: Sequence[int], continuation: Sequence[int]) -> tuple[float, bool]:
    """log P(continuation | context) summed over the continuation's tokens, and whether every one of them
    is the most likely token at its place (lm-eval's ``is_greedy``).

    When context + continuation is longer than the model's block size + 1, the oldest context tokens are
    dropped (the last input row predicts the last continuation token, so block_size + 1 ids fit). A
    continuation longer than the block size itself is scored in sliding windows (nano.eval.windows, stride
    half the block), each of its tokens seeing at least half a block of the tokens before it.
    """
    context, continuation = list(context), list(continuation)
    if not context:
        raise ValueError("the context must hold at least one token (use a start token for empty text)")
    if not continuation:
        raise ValueError("the continuation is empty: there is nothing to score")
    block = engine.config["block_size"]
    if len(continuation) <= block:
        ids = (context + continuation)[-(block + 1):]
        logprob, greedy = engine.token_logprobs(ids, first=len(ids) - len(continuation))
        return float(np.sum(logprob)), bool(np.all(greedy))
    ids = context + continuation
    total, all_greedy = 0.0, True
    for w in sliding_windows(len(ids), block, max(1, block // 2)):
        first = max(w.first, len(context))
        if first > w.end:
            continue  # this window scores context tokens only
        logprob, greedy = engine.token_logprobs(ids[w.start:w.end + 1], first=first - w.start)
        total += float(np.sum(logprob))
        all_greedy = all_greedy and bool(np.all(greedy))
    return total, all_greedy


def encode_pair(engine: Engine, context: str, continuation: str, start: str | None = EOS,
                ) -> tuple[list[int], list[int]]:
    """Token ids of a (context, continuation) text pair: the start token (unless None) and the context's
    tokens, then the continuation's tokens. The two texts are encoded separately, so the continuation is
    scored as exactly its own tokens even where the tokenizer would join characters across the boundary.
    """
    tok = engine.tokenizer
    context_ids = ([special_id(engine, start)] if start is not None else []) + tok.encode(context)
    return context_ids, tok.encode(continuation)
