"""Data preparation: the out-of-core shuffler and the pretrain / SFT token pipelines (docs/data.md).

``python -m nano.data shuffle|pretrain|sft ...`` is the command line (see ``nano.data.__main__``).
Names are imported on first use, so ``python -m nano.data shuffle`` does not pay for NumPy and the
tokenizer pipelines (≈ 0.2 s per call).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DataError": "nano.data.records",
    "parse_size": "nano.data.shuffle",
    "prepare_pretrain": "nano.data.pretrain",
    "prepare_sft": "nano.data.sft",
    "shuffle": "nano.data.shuffle",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nano.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
