"""``kl``: how far a model (quantized, LoRA-merged, ...) drifts from its base on the same text.

Both models read the same windows (nano.eval.windows) of the same token ids; at every scored position
KL(P_base || P_model) = sum_v P_base(v) (log P_base(v) - log P_model(v)) over the whole vocabulary. Reported
as llama.cpp's ``llama-perplexity --kl-divergence`` does: mean (with its standard error), median, 99th
percentile and maximum of the per-token KL, the share of positions where both models' most likely tokens
agree (top-1 agreement), and both perplexities with their difference and ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nano.eval.ppl import document_ids, iter_windows, summarize, window_settings
from nano.eval.report import progress
from nano.eval.scoring import open_engine
from nano.tokenizer import EOS

__all__ = ["kl_divergence", "token_kl"]


def token_kl(base_logprobs: np.ndarray, model_logprobs: np.ndarray) -> np.ndarray:
    """KL(base || model) per row of two [rows, vocab] log-probability arrays (nats, float64).

    Terms where the base probability is 0 contribute 0 (the limit of p log p); a row is exactly 0 when the
    two rows are equal.
    """
    p = np.exp(base_logprobs)
    terms = np.where(p > 0, p * (base_logprobs - model_logprobs), 0.0)
    return terms.sum(axis=-1)


def kl_divergence(base, model, texts: Sequence[str], *, context: int | None = None, stride: int | None = None,
                  start: str = EOS, threads: int | None = None, show_progress: bool = True) -> dict:
    """KL divergence of ``model`` from ``base`` over the texts (both: model files or nano.Engine objects).

    The two must share the vocabulary (same tokenizer hash) and block size.
    """
    base_engine = open_engine(base, threads)
    model_engine = open_engine(model, threads)
    if base_engine.tokenizer.hash != model_engine.tokenizer.hash:
        raise ValueError("the two models have different vocabularies; KL divergence compares the same tokens")
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings (one per document), not one string")
    context, stride = window_settings(base_engine, context, stride)
    context, stride = window_settings(model_engine, context, stride)
    docs = [document_ids(base_engine, t, start) for t in texts]
    kls, agree = [], 0
    nll_base = nll_model = 0.0
    with progress(sum(len(d) - 1 for d in docs), "kl", show_progress) as bar:
        for ids in docs:
            for w, inputs, targets in iter_windows(ids, context, stride):
                lp_base = base_engine.log_probs(inputs)[w.skip:]
                lp_model = model_engine.log_probs(inputs)[w.skip:]
                rows = np.arange(len(targets))
                nll_base -= float(lp_base[rows, targets].sum())
                nll_model -= float(lp_model[rows, targets].sum())
                kls.append(token_kl(lp_base, lp_model))
                agree += int((lp_base.argmax(axis=-1) == lp_model.argmax(axis=-1)).sum())
                bar.update(w.scored)
    kl = np.concatenate(kls) if kls else np.zeros(0)
    n = len(kl)
    chars = sum(len(t) for t in texts)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    b, m = summarize(nll_base, n, chars, nbytes), summarize(nll_model, n, chars, nbytes)
    return {
        "tokens": n,
        "kl_mean": float(kl.mean()) if n else math.nan,
        "kl_mean_stderr": float(kl.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "kl_median": float(np.median(kl)) if n else math.nan,
        "kl_p99": float(np.percentile(kl, 99)) if n else math.nan,
        "kl_max": float(kl.max()) if n else math.nan,
        "top1_agreement": agree / n if n else math.nan,
        "ppl_base": b["ppl"],
        "ppl_model": m["ppl"],
        "delta_ppl": m["ppl"] - b["ppl"],
        "ppl_ratio": m["ppl"] / b["ppl"] if n else math.nan,
        "base": b,
        "model": m,
        "settings": {"base": base_engine.path, "model": model_engine.path, "context": context, "stride": stride,
                     "start": start},
    }
