"""lm-evaluation-harness adapter: the model type ``nano`` runs lm-eval's tasks on Nano's native engine.

    python -m nano.eval lm-eval --model nano --model_args path=model.bin --tasks TASK [lm_eval options]

lm-eval (0.4.x) finds model types only in its own registry, which lists its built-in models; it does not
look for other packages' models (no entry-point discovery), so ``nano`` exists once this module is imported.
``python -m nano.eval lm-eval ...`` imports it and hands the remaining arguments to lm-eval's own command
line; from Python, pass an instance: ``lm_eval.simple_evaluate(model=NanoLM(path="model.bin"), tasks=[...])``.

Model arguments (``--model_args k=v,...``): ``path`` (model file), ``threads``, ``kv_cache`` (f32 / f16),
``lora`` (plug-in file), ``start`` (special token put before every context, default ``<|eos|>``),
``context`` and ``stride`` (windows of ``loglikelihood_rolling``; by default the block size and disjoint
windows, which is lm-eval's own rolling scheme: every token predicted once, the last window full).

Requests are scored exactly as ``nano.eval mc`` scores them (nano.eval.scoring.loglikelihood on
nano.eval.scoring.encode_pair), so the same items give the same log-likelihoods and the same accuracy.
"""

from __future__ import annotations

import sys

import numpy as np
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from nano.eval.ppl import document_ids, iter_windows, window_logprobs, window_settings
from nano.eval.scoring import encode_pair, loglikelihood, open_engine, special_id
from nano.tokenizer import EOS

__all__ = ["NanoLM", "run_lm_eval"]


@register_model("nano")
class NanoLM(LM):
    def __init__(self, path: str | None = None, threads: int | None = None, kv_cache: str = "f32",
                 lora: str | None = None, start: str = EOS, context: int | None = None,
                 stride: int | None = None, batch_size=None, max_batch_size=None, device=None, **unknown):
        super().__init__()
        if path is None:
            raise ValueError("the nano model needs path=MODEL.bin in --model_args")
        if unknown:
            raise ValueError(f"unknown nano model arguments: {', '.join(sorted(unknown))} "
                             "(known: path, threads, kv_cache, lora, start, context, stride)")
        if device not in (None, "cpu"):
            print(f"nano: device={device!r} ignored; the native engine runs on the CPU", file=sys.stderr)
        # batch_size / max_batch_size are lm-eval's; the engine scores one sequence at a time
        self.engine = open_engine(str(path), None if threads is None else int(threads), str(kv_cache))
        if lora is not None:
            self.engine.load_lora(str(lora))
        self.start = start
        special_id(self.engine, start)  # refuse a missing start token now, not at the first request
        context = self.engine.config["block_size"] if context is None else int(context)
        self.context, self.stride = window_settings(self.engine, context, context if stride is None else int(stride))

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out = []
        for req in tqdm(requests, disable=disable_tqdm, desc="nano loglikelihood"):
            context, continuation = req.args
            result = loglikelihood(self.engine, *encode_pair(self.engine, context, continuation, self.start))
            self.cache_hook.add_partial("loglikelihood", req.args, result)
            out.append(result)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for req in tqdm(requests, disable=disable_tqdm, desc="nano loglikelihood_rolling"):
            (text,) = req.args
            ids = document_ids(self.engine, text, self.start)
            total = 0.0
            for w, inputs, targets in iter_windows(ids, self.context, self.stride):
                total += float(np.sum(window_logprobs(self.engine, inputs, w, targets)))
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            out.append(total)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        block = self.engine.config["block_size"]
        for req in tqdm(requests, disable=disable_tqdm, desc="nano generate_until"):
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", 256))
            do_sample = bool(kwargs.pop("do_sample", False))
            temperature = float(kwargs.pop("temperature", 0.0)) if do_sample else 0.0
            top_k, top_p = int(kwargs.pop("top_k", 0) or 0), float(kwargs.pop("top_p", 1.0) or 1.0)
            seed = int(kwargs.pop("seed", 0) or 0)
            ids = [special_id(self.engine, self.start), *self.engine.tokenizer.encode(context)]
            ids = ids[-max(1, block - max_new):]  # keep the newest context and room to generate
            text = ""
            pieces = self.engine.generate(ids, max_new_tokens=max_new, temperature=temperature, top_k=top_k,
                                          top_p=top_p, seed=seed)
            try:
                for piece in pieces:
                    text += piece
                    cut = min((text.find(s) for s in until if s and s in text), default=-1)
                    if cut >= 0:
                        text = text[:cut]
                        break
            finally:
                pieces.close()
            self.cache_hook.add_partial("generate_until", req.args, text)
            out.append(text)
        return out


def run_lm_eval(argv: list[str]) -> int:
    """lm-eval's command line with the ``nano`` model registered (this module is imported by then)."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    cli_evaluate()
    return 0
