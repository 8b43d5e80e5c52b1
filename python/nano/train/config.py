"""Training configuration: defaults, the original config_pretrain.json key names, overrides, paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nano.model import ModelConfig

DEFAULTS: dict = {
    # data
    "train_data": None,  # a prepared dataset directory (nano.data); "dataset_path" is accepted too
    "val_data": None,  # default: the "val" split of train_data
    "tokenizer_path": None,  # default: the dataset's tokenizer.json
    "shuffle": "auto",  # BlockLoader mode: random | epoch; auto = epoch (no overlap) under torchrun
    # optimisation
    "batch_size": 16,
    "gradient_accumulation_steps": 1,
    "max_iters": 1000,
    "time_limit": None,  # seconds: stop (and save) after the step that crosses it; for demos and job slots
    "learning_rate": 6e-4,
    "decay_lr": True,
    "warmup_iters": 100,
    "lr_decay_iters": None,  # default: max_iters
    "min_lr": 6e-5,
    "weight_decay": 0.1,
    "beta1": 0.9,
    "beta2": 0.95,
    "grad_clip": 1.0,
    "dropout": None,  # overrides the model config's dropout when set
    # precision and speed
    "device": "auto",  # auto | cpu | cuda | cuda:N | mps
    "dtype": "auto",  # auto (bf16 on capable GPUs, else f32) | float32 | bfloat16 | float16
    "use_amp": True,
    "sdp_kernel": "auto",  # auto | flash | efficient | math | cudnn
    "compile": False,
    "num_threads": None,  # CPU threads for torch (default: torch's choice)
    "fsdp": False,  # FSDP2 fully_shard instead of DDP under torchrun
    "random_seed": 42,
    # evaluation, logging
    "eval_interval": 100,
    "eval_iters": 20,
    "log_interval": 10,
    "metrics_log": None,  # default: <save_checkpoint_to>/metrics.jsonl
    "tensorboard": True,  # when the tensorboard package is installed
    "progress": True,
    "sample_interval": 0,  # print a sample every N steps (0 = only never during training)
    "sample_prompt": None,
    "sample_tokens": 64,
    # checkpoints
    "save_checkpoint_to": "runs/train",
    "save_interval": None,  # default: eval_interval
    "keep_last": 2,
    "save_best": True,
    "from_checkpoint": None,
    "resume": False,
    # LoRA
    "use_lora": False,
    "lora_rank": 8,
    "lora_alpha": 16.0,
    "lora_dropout": 0.0,
    "lora_targets": ["wq", "wk", "wv", "wo"],
}

ALIASES = {"dataset_path": "train_data", "seed": "random_seed", "out_dir": "save_checkpoint_to"}
INPUT_PATHS = ("train_data", "val_data", "tokenizer_path", "from_checkpoint")
OUTPUT_PATHS = ("save_checkpoint_to", "metrics_log")
# keys of the original configs that have no meaning here (kept so old files load without noise)
IGNORED = {"backend", "eval_only_last_ckpt", "init_from", "wandb_log", "wandb_project", "wandb_run_name"}


def normalise(cfg: dict, base_dir: str | Path | None = None) -> dict:
    """Fill defaults, map the original key names, check values, and resolve input paths."""
    out = dict(DEFAULTS)
    model_keys = {f for f in ModelConfig.__dataclass_fields__} - {"dropout"}
    for key, value in cfg.items():
        key = ALIASES.get(key, key)
        if key == "betas":
            out["beta1"], out["beta2"] = (float(v) for v in value)
        elif key == "train_data" and isinstance(value, list):
            out["train_data"], out["val_data"] = _dataset_pair(value)
        elif key in DEFAULTS:
            out[key] = value
        elif key not in IGNORED and key not in model_keys:
            print(f"nano.train: ignoring unknown train config key {key!r}", file=sys.stderr)
    if out["lr_decay_iters"] is None:
        out["lr_decay_iters"] = out["max_iters"]
    if out["save_interval"] is None:
        out["save_interval"] = out["eval_interval"]
    for key in ("batch_size", "gradient_accumulation_steps", "eval_interval", "eval_iters", "log_interval"):
        if int(out[key]) < 1:
            raise ValueError(f"train config: {key} must be >= 1, got {out[key]!r}")
    if int(out["max_iters"]) < 0:
        raise ValueError(f"train config: max_iters must be >= 0, got {out['max_iters']!r}")
    if out["dtype"] not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"train config: dtype must be auto, float32, bfloat16 or float16, got {out['dtype']!r}")
    for key in INPUT_PATHS:
        if out[key]:
            out[key] = str(resolve_input(out[key], base_dir))
    return out


def _dataset_pair(value: list) -> tuple[str, str | None]:
    """The original's ``dataset_path: [[train, val]]`` (or ``[train, val]``) as prepared directories."""
    pairs = value if value and isinstance(value[0], list) else [value]
    if len(pairs) != 1 or not 1 <= len(pairs[0]) <= 2:
        raise ValueError("train config: dataset_path must name one prepared dataset (or one [train, val] pair); "
                         "combine several corpora when preparing them with python -m nano.data")
    train, val = (list(pairs[0]) + [None])[:2]
    return train, val


def resolve_input(path: str | Path, base_dir: str | Path | None) -> Path:
    """A relative input path is looked up beside the config file first, then in the working directory."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if base_dir is not None and (Path(base_dir) / p).exists():
        return (Path(base_dir) / p).resolve()
    return p.resolve()


def parse_overrides(items: list[str]) -> dict:
    """--set key=value pairs; values are parsed as JSON when they parse (numbers, true, lists), else text."""
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
