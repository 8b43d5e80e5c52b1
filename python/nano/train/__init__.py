"""Training: ``nano.train.run(model_config, train_config, ...)`` and ``python -m nano.train``.

Modes: pretraining from scratch; full-parameter SFT from a checkpoint (``from_checkpoint``, a new run);
LoRA (``use_lora``); exact resume (``resume``). See docs/training.md.
"""

from nano.train.loop import run

__all__ = ["run"]
