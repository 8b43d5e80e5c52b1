"""Nano: train and run small Llama-style language models end to end.

The heavy lifting (tokenizer, shuffler, model-file format, inference engine) lives in Rust and is
reached through the extension module ``nano._native``; training and the reference model are PyTorch.
"""

from nano import _native

__version__ = _native.__version__

__all__ = ["__version__"]
