"""``ppl``: cross-entropy of texts over sliding windows, as perplexity per token and bits per character
and per UTF-8 byte (the last two compare models with different vocabularies).

Each text is one document: its tokens follow one start token (``<|eos|>`` by default, the token that
ends every document in Nano's pretraining data), so every token of the text is predicted, including the
first, and the bits are spread over every character and byte of the text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from nano.engine import Engine
from nano.eval.report import progress
from nano.eval.scoring import open_engine, special_id
from nano.eval.windows import Window, sliding_windows
from nano.tokenizer import EOS

__all__ = ["perplexity", "document_ids", "window_settings", "iter_windows", "summarize"]

LN2 = math.log(2.0)


def document_ids(engine: Engine, text: str, start: str = EOS) -> list[int]:
    """The start token, then the text's tokens (special-token strings in the text stay plain text)."""
    return [special_id(engine, start), *engine.tokenizer.encode(text)]


def window_settings(engine: Engine, context: int | None, stride: int | None) -> tuple[int, int]:
    """(context, stride) checked against the model: context defaults to the block size, stride to half."""
    block = engine.config["block_size"]
    context = block if context is None else int(context)
    if not 1 <= context <= block:
        raise ValueError(f"context must be between 1 and the model's block size {block}, got {context}")
    stride = max(1, context // 2) if stride is None else int(stride)
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be between 1 and the context ({context}), got {stride}")
    return context, stride


def iter_windows(ids: Sequence[int], context: int, stride: int) -> Iterator[tuple[Window, list[int], np.ndarray]]:
    """(window, input ids, scored target ids) for each window of ``ids`` (see nano.eval.windows)."""
    ids = list(ids)
    for w in sliding_windows(len(ids), context, stride):
        yield w, ids[w.start:w.end], np.asarray(ids[w.first:w.end + 1], dtype=np.int64)


def window_logprobs(engine: Engine, inputs: list[int], w: Window, targets: np.ndarray) -> np.ndarray:
    """log P of the window's scored targets (float64)."""
    logprob, _ = engine.token_logprobs([*inputs, int(targets[-1])], first=w.first - w.start)
    return logprob


def summarize(nll: float, tokens: int, chars: int, nbytes: int) -> dict:
    """Per-token perplexity and bits per character / byte from a summed negative log-likelihood (nats)."""
    return {
        "tokens": tokens,
        "chars": chars,
        "bytes": nbytes,
        "nll": nll,
        "nll_per_token": nll / tokens if tokens else math.nan,
        "ppl": math.exp(nll / tokens) if tokens else math.nan,
        "bits_per_char": nll / LN2 / chars if chars else math.nan,
        "bits_per_byte": nll / LN2 / nbytes if nbytes else math.nan,
    }


def perplexity(model, texts: Sequence[str], *, context: int | None = None, stride: int | None = None,
               start: str = EOS, threads: int | None = None, show_progress: bool = True,
               names: Sequence[str] | None = None) -> dict:
    """Cross-entropy of each text and of all together (token-weighted), on the native engine.

    ``model``: a model file or a ``nano.Engine``. Returns ``{"total": {...}, "texts": [{...}, ...],
    "settings": {...}}`` where each summary has tokens, chars, bytes, nll (nats, summed), nll_per_token,
    ppl, bits_per_char, bits_per_byte, and per text the number of ``<|unknown|>`` tokens (characters outside
    the vocabulary, predicted as one token, which makes the figures optimistic).
    """
    engine = open_engine(model, threads)
    context, stride = window_settings(engine, context, stride)
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings (one per document), not one string")
    names = list(names) if names is not None else [f"text{i}" for i in range(len(texts))]
    docs = [document_ids(engine, t, start) for t in texts]
    unknown = engine.tokenizer.unknown_id
    bar = progress(sum(len(d) - 1 for d in docs), "ppl", show_progress)
    per_text = []
    with bar:
        for name, text, ids in zip(names, texts, docs, strict=True):
            nll = 0.0
            for w, inputs, targets in iter_windows(ids, context, stride):
                nll -= float(np.sum(window_logprobs(engine, inputs, w, targets)))
                bar.update(w.scored)
            row = summarize(nll, len(ids) - 1, len(text), len(text.encode("utf-8")))
            row["unknown_tokens"] = int(sum(1 for i in ids[1:] if i == unknown))
            per_text.append({"name": name, **row})
    total = summarize(sum(r["nll"] for r in per_text), sum(r["tokens"] for r in per_text),
                      sum(r["chars"] for r in per_text), sum(r["bytes"] for r in per_text))
    total["unknown_tokens"] = sum(r["unknown_tokens"] for r in per_text)
    return {"total": total, "texts": per_text,
            "settings": {"model": engine.path, "context": context, "stride": stride, "start": start}}
