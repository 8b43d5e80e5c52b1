"""Data preparation: the out-of-core shuffler and the pretrain / SFT token pipelines (docs/data.md).

``python -m nano.data shuffle|pretrain|sft ...`` is the command line (see ``nano.data.__main__``).
The token pipelines are imported on first use, so ``python -m nano.data shuffle`` does not import NumPy.
"""

from __future__ import annotations

from nano._lazy import lazy_exports

# Bound eagerly: the submodule ``nano.data.shuffle`` would otherwise shadow the function of that name.
from nano.data.records import DataError
from nano.data.shuffle import parse_size, shuffle

_EXPORTS = {
    "prepare_pretrain": "nano.data.pretrain",
    "prepare_sft": "nano.data.sft",
}

__all__ = ["DataError", "parse_size", "prepare_pretrain", "prepare_sft", "shuffle"]


__getattr__, __dir__ = lazy_exports("nano.data", _EXPORTS, globals())
