"""Data preparation: the out-of-core shuffler and the pretrain / SFT token pipelines (docs/data.md).

``python -m nano.data shuffle|pretrain|sft ...`` is the command line (see ``nano.data.__main__``).
"""

from nano.data.pretrain import prepare_pretrain
from nano.data.records import DataError
from nano.data.sft import prepare_sft
from nano.data.shuffle import parse_size, shuffle

__all__ = ["DataError", "parse_size", "prepare_pretrain", "prepare_sft", "shuffle"]
