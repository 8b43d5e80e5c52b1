"""Nano: train and run small Llama-style language models end to end.

The heavy lifting (tokenizer, shuffler, model-file format, inference engine) lives in Rust and is
reached through the extension module ``nano._native``; training and the reference model are PyTorch.

Public names are imported lazily, so ``import nano`` stays fast and does not import PyTorch.
"""

from nano import _native
from nano._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports("nano", _EXPORTS, globals())
