"""Helpers shared by the tests: loaders that serve fixed batches, tiny models, PyTorch logits, and prepared
datasets written through the real writer (``nano.data.writer.DatasetWriter``), so a test's dataset always has
the format the preparation commands produce."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class FixedLoader:
    """Serves the same rows forever, ``batch_size`` at a time, cycling (a loader for ``nano.train.run``)."""

    def __init__(self, x, y, mask, batch_size: int | None = None):
        self.x, self.y, self.mask, self.pos = x, y, mask, 0
        self.bs = len(x) if batch_size is None else batch_size

    def next_batch(self):
        s = slice(self.pos, self.pos + self.bs)
        self.pos = (self.pos + self.bs) % len(self.x)
        return self.x[s], self.y[s], self.mask[s]

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, d):
        self.pos = d["pos"]


def repeat_loader(rows) -> FixedLoader:
    """The same batch forever: inputs ``rows[:, :-1]``, targets ``rows[:, 1:]``, every target weighted 1."""
    import torch

    return FixedLoader(rows[:, :-1], rows[:, 1:], torch.ones(rows.shape[0], rows.shape[1] - 1))


#: The smallest shape that still has every feature the engines implement (grouped-query attention: 4 heads
#: sharing 2 key/value heads, two layers, a SwiGLU hidden size different from the embedding size).
TINY = dict(block_size=32, vocab_size=96, n_layer=2, n_embd=32, n_head=4, n_kv_head=2, n_hidden=64)


def tiny_config(**overrides):
    """A :class:`nano.model.ModelConfig` of the :data:`TINY` shape with ``overrides``."""
    from nano.model import ModelConfig

    return ModelConfig(**{**TINY, **overrides})


def tiny_model(seed: int = 0, **overrides):
    """A randomly initialised tiny Transformer in eval mode; norm weights are moved away from 1 so that a
    swapped or ignored norm tensor changes the output."""
    import torch
    from nano.model import Transformer

    torch.manual_seed(seed)
    model = Transformer(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
    return model


def torch_logits(model, ids) -> np.ndarray:
    """The PyTorch reference's logits at every position of ``ids``: float32 [len(ids), vocab]."""
    import torch

    with torch.no_grad():
        return model(torch.tensor([list(ids)]))[0][0].numpy()


def filler_tokenizer(vocab_size: int, tag: str = "t"):
    """A vocabulary of ``vocab_size`` tokens: the special tokens, then ``{tag}0``, ``{tag}1``, ... A different
    ``tag`` gives a different tokenizer hash."""
    from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

    special = list(DEFAULT_SPECIAL_TOKENS)
    tokens = special + [f"{tag}{i}" for i in range(vocab_size - len(special))]
    return Tokenizer.from_tokens(tokens, [i < len(special) for i in range(vocab_size)])


def write_dataset(path: Path, train, val=(), *, kind: str = "pretrain", masks: dict | None = None,
                  block_size: int | None = None, tokenizer=None, vocab_size: int | None = None) -> Path:
    """A prepared dataset at ``path`` holding exactly the given token arrays (and, for SFT, ``masks``
    ``{"train": ..., "val": ...}``), written by ``DatasetWriter``. The tokenizer defaults to a
    :func:`filler_tokenizer` of ``vocab_size`` tokens, or more where the ids need them."""
    from nano.data.writer import DatasetWriter

    train, val = np.asarray(train), np.asarray(val)
    if tokenizer is None:
        top = max([int(a.max()) + 1 for a in (train, val) if a.size] + [16])
        tokenizer = filler_tokenizer(max(vocab_size or 0, top))
    sft = kind == "sft"
    with DatasetWriter(path, tokenizer, kind, with_mask=sft) as writer:
        for split, tokens in (("train", train), ("val", val)):
            writer.append(split, tokens, np.asarray(masks[split]) if sft else None)
        writer.commit({"train": {"documents": 1}, "val": {"documents": 1}}, block_size, {})
    return Path(path)
