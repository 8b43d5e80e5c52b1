"""Former home of the dataset reader, kept because docs and user code import ``nano.dataset.BlockLoader``.

The reader lives in :mod:`nano.data.loader`, the format's constants in :mod:`nano.data.format`.
"""

from nano.data.format import FORMAT, VERSION, read_meta
from nano.data.loader import MODES, BlockLoader

__all__ = ["FORMAT", "MODES", "VERSION", "BlockLoader", "read_meta"]
