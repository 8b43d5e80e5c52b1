"""Nano: train and run small Llama-style language models end to end.

The heavy lifting (tokenizer, shuffler, model-file format, inference engine) lives in Rust and is
reached through the extension module ``nano._native``; training and the reference model are PyTorch.

Public names are imported lazily, so ``import nano`` stays fast and does not import PyTorch.
"""

import importlib

from nano import _native

__version__ = _native.__version__

# public name -> module that defines it
_EXPORTS = {
    "Tokenizer": "nano.tokenizer",
    "shuffle": "nano.data",
    "Engine": "nano.engine",
    "load_bin": "nano.export",
    "ModelConfig": "nano.model",
    "Transformer": "nano.model",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nano' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
