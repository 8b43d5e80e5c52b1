"""``nano.Engine``: the native Rust engine (the ``rust/infer`` crate, also behind the ``nano-infer`` binary
and the browser page) driven from Python through ``nano._native``. PyTorch inference is :mod:`nano.infer`.

    >>> eng = Engine("model.bin", threads=4)                                    # doctest: +SKIP
    >>> for piece in eng.generate("你好", max_new_tokens=50, temperature=0):    # doctest: +SKIP
    ...     print(piece, end="", flush=True)

Generation runs on a native worker thread; the iterator waits for pieces with the GIL released, so other
Python threads keep running. Sampling follows docs/sampling.md exactly (same seed, same text as PyTorch).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from nano import _native

__all__ = ["Engine", "log_softmax"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log-softmax over the last axis in float64 (the logits are float32; the sums over a vocabulary of
    tens of thousands of terms keep their precision in float64)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


class Engine:
    """A loaded model file ready to generate; LoRA plug-ins can be swapped at run time.

    ``threads=None`` uses the machine's physical performance cores (SMT siblings and, on big.LITTLE
    boards, the little cores left out). ``kv_cache="f16"`` keeps the attention cache in half precision:
    half its memory, logits within about 1e-3 of the f32 cache's. ``ctx`` limits the context (prompt and
    generated tokens together) below the model's maximum, and with it the KV cache memory
    (``kv_cache_bytes``). The path may be a Nano ``.bin`` or a llama.cpp GGUF file (``llama`` and ``qwen2``
    architectures, converted at load; docs/interop.md).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, kv_cache: str = "f32",
                 ctx: int | None = None):
        self._native = _native.Engine(os.fspath(path), threads, kv_cache, ctx)
        self.path = os.fspath(path)
        self.config: dict = json.loads(self._native.config_json)

    @functools.cached_property
    def tokenizer(self):
        """The model file's tokenizer (built once per engine; it never changes): a
        :class:`nano.tokenizer.Tokenizer`, or a :class:`nano.tokenizer.BpeTokenizer` for models imported
        from Hugging Face (``nano.export --from-hf``)."""
        from nano.tokenizer import BpeTokenizer, Tokenizer

        if self._native.tokenizer_kind == "hf":
            return BpeTokenizer.from_hf_json(self._native.tokenizer_json)
        return Tokenizer.from_json(self._native.tokenizer_json)

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The prompt the model's own chat template (carried in files imported from Hugging Face) makes
        of OpenAI-style ``[{"role": ..., "content": ...}]`` messages, as ``transformers``'
        ``apply_chat_template(..., tokenize=False)`` renders it. ValueError when the file has no template."""
        return self._native.render_chat(json.dumps(list(messages), ensure_ascii=False), add_generation_prompt)

    @property
    def kv_cache_bytes(self) -> int:
        """Bytes the KV cache takes when the context is full (``config["block_size"]`` positions)."""
        return self._native.kv_cache_bytes

    @property
    def base_hash(self) -> str | None:
        return self._native.base_hash

    def load_lora(self, path: str | os.PathLike) -> None:
        """Plug in a LoRA adapter (refused with ValueError if it belongs to another base)."""
        self._native.load_lora(os.fspath(path))

    def unload_lora(self) -> None:
        self._native.unload_lora()

    def prompt_ids(self, prompt: str, instruct: bool = False) -> list[int]:
        return self._native.prompt_ids(prompt, instruct)

    def generate(self, prompt: str | Sequence[int], max_new_tokens: int = 256, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int = 0,
                 instruct: bool = False) -> Iterator[str]:
        """Iterator of text pieces (one per generated token). ``prompt`` is text or a list of token ids
        (bytes are neither: TypeError). Options are checked as every Nano engine checks them
        (``nano.sampling.check_options``).

        The iterator has ``.close()`` (stop early) and, once exhausted, ``.stats`` (token counts, seconds).
        """
        if max_new_tokens < 0 or seed < 0:
            raise ValueError("max_new_tokens and seed must be >= 0")
        if not isinstance(prompt, (str, bytes, bytearray)):  # bytes: refused natively (TypeError)
            prompt = [int(i) for i in prompt]
        return self._native.generate(prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                                     seed % (1 << 64), instruct)

    @property
    def chat_template(self) -> str:
        """The Jinja source of the model's chat template (Nano's instruction template:
        ``nano.tokenizer.CHAT_TEMPLATE``)."""
        return self._native.chat_template

    def chat_prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The token ids the answer to ``messages`` is generated after: the conversation rendered with the
        model's chat template and encoded with the special tokens matched. ``messages`` are OpenAI-style
        ``{"role": "user" | "assistant", "content": text}`` turns, alternating from the user's and ending
        with it (ValueError otherwise, or when the prompt does not fit the context); ``"system"`` turns are
        left out by Nano's instruction template, which has no place for them."""
        if isinstance(messages, (str, bytes, bytearray, Mapping)):
            raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
        try:
            messages_json = json.dumps([dict(m) for m in messages], ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise TypeError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts: {e}") from None
        return self._native.chat_prompt_ids(messages_json)

    def chat(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int = 256, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
             seed: int = 0) -> Iterator[str]:
        """The assistant's answer to a conversation, streamed as :meth:`generate` streams (same options,
        same ``.close()`` / ``.stats``), generated after :meth:`chat_prompt_ids` of ``messages``.

            >>> history = [{"role": "user", "content": "你好"}]                  # doctest: +SKIP
            >>> answer = "".join(eng.chat(history, temperature=0))             # doctest: +SKIP
            >>> history += [{"role": "assistant", "content": answer}, ...]      # doctest: +SKIP
        """
        ids = self.chat_prompt_ids(messages)
        return self.generate(ids, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed)

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """float32 logits [len(token_ids), vocab] at every position (a fresh forward pass)."""
        if not isinstance(token_ids, (str, bytes, bytearray)):  # refused natively (TypeError)
            token_ids = [int(i) for i in token_ids]
        return self._native.logits(token_ids)

    def log_probs(self, token_ids: Sequence[int]) -> np.ndarray:
        """float64 log-probabilities [len(token_ids), vocab]: row j is the distribution of the token after
        ``token_ids[:j + 1]`` (the log-softmax of :meth:`logits`, from one prefill pass)."""
        return log_softmax(self.logits(token_ids))

    def token_logprobs(self, token_ids: Sequence[int], first: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Log-probability of each given token after the ones before it, from one prefill pass.

        Returns ``(logprob, greedy)`` for the tokens ``token_ids[first:]``: ``logprob[k]`` is
        log P(token_ids[first + k] | token_ids[:first + k]) (float64) and ``greedy[k]`` says whether that
        token is the most likely one there. ``first`` must be at least 1 (the first token has no context).
        The last token is only a target, so at most block_size + 1 ids fit.
        """
        ids = [int(i) for i in token_ids]
        if not 1 <= first < len(ids):
            raise ValueError(f"first must be in [1, {len(ids) - 1}] for {len(ids)} token ids, got {first}")
        targets = np.asarray(ids[first:], dtype=np.int64)
        logits = self.logits(ids[:-1])[first - 1:]
        rows = np.arange(len(targets))
        logprob = log_softmax(logits)[rows, targets]
        greedy = logits.argmax(axis=-1) == targets
        return logprob, greedy

    def __repr__(self) -> str:
        c = self.config
        return f"Engine({self.path!r}, n_layer={c['n_layer']}, n_embd={c['n_embd']}, vocab={c['vocab_size']})"
