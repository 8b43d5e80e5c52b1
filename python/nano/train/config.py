"""Training configuration: defaults, the original config_pretrain.json key names, overrides, paths."""

from __future__ import annotations

import difflib
import json
import math
import numbers
import re
from pathlib import Path

from nano._cli import MAX_THREADS, MAX_TRAIN_SEED, range_text
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
    """Fill defaults, map the original key names, check every value, and resolve input paths.

    The whole config is checked before anything runs: an unknown key, a value of the wrong type or out of
    range, or an input file that does not exist is a ValueError / FileNotFoundError naming the key.
    """
    if not isinstance(cfg, dict):
        raise ValueError(f"train config must be a JSON object (key: value), got a {_json_type(cfg)}")
    out = dict(DEFAULTS)
    model_keys = {f for f in ModelConfig.__dataclass_fields__} - {"dropout"}
    for key, value in cfg.items():
        key = ALIASES.get(key, key)
        if key == "betas":
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ValueError(f"train config: betas must be a list of two numbers, got {value!r}")
            out["beta1"], out["beta2"] = value
        elif key == "train_data" and isinstance(value, list):
            out["train_data"], out["val_data"] = _dataset_pair(value)
        elif key in DEFAULTS:
            out[key] = value
        elif key not in IGNORED and key not in model_keys:
            close = difflib.get_close_matches(key, [*DEFAULTS, *ALIASES], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"train config: unknown key {key!r}{hint}")
    for key, check in CHECKS.items():
        out[key] = check(key, out[key])
    if out["lr_decay_iters"] is None:
        out["lr_decay_iters"] = out["max_iters"]
    if out["save_interval"] is None:
        out["save_interval"] = out["eval_interval"]
    for key in INPUT_PATHS:
        if out[key]:
            path = resolve_input(out[key], base_dir)
            if not path.exists():
                raise FileNotFoundError(f"train config: {key} {path} does not exist")
            out[key] = str(path)
    return out


def _json_type(value) -> str:
    names = {list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _integer(lo: int | None = None, hi: int | None = None, optional: bool = False):
    def check(key, value):
        if value is None and optional:
            return None
        # 1e9 in the original configs is an integer written as a float; 2.7 is not an integer.
        integral = isinstance(value, numbers.Integral) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer())
        if isinstance(value, bool) or not integral:
            raise ValueError(f"train config: {key} must be an integer{' or null' if optional else ''}, "
                             f"got {value!r}")
        if lo is not None and value < lo or hi is not None and value > hi:
            raise ValueError(f"train config: {key} must be {range_text(lo, hi)}, got {value!r}")
        return int(value)

    return check


def _number(lo: float | None = None, hi: float | None = None, *, above: bool = False, below: bool = False,
            optional: bool = False):
    """A finite real number in [lo, hi]; ``above`` / ``below`` make that end open."""

    def check(key, value):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"train config: {key} must be a finite number{' or null' if optional else ''}, "
                             f"got {value!r}")
        if (lo is not None and (value <= lo if above else value < lo)
                or hi is not None and (value >= hi if below else value > hi)):
            left = "(" if above else "["
            right = ")" if below else "]"
            interval = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            raise ValueError(f"train config: {key} must be in {interval}, got {value!r}")
        return float(value)

    return check


def _boolean(key, value):
    if not isinstance(value, bool):
        raise ValueError(f"train config: {key} must be true or false, got {value!r}")
    return value


def _text(optional: bool = True):
    def check(key, value):
        if optional and value in (None, ""):  # the original configs write "" for "not set"
            return None
        if not isinstance(value, str) or not value:
            raise ValueError(f"train config: {key} must be a non-empty string{' or null' if optional else ''}, "
                             f"got {value!r}")
        return value

    return check


def _choice(*options):
    def check(key, value):
        if value not in options:
            raise ValueError(f"train config: {key} must be one of {', '.join(map(str, options))}, got {value!r}")
        return value

    return check


def _device(key, value):
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError(f"train config: {key} must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


def _names(key, value):
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"train config: {key} must be a non-empty list of names, got {value!r}")
    return list(value)


CHECKS = {
    "train_data": _text(), "val_data": _text(), "tokenizer_path": _text(),
    "shuffle": _choice("auto", "random", "epoch"),
    "batch_size": _integer(1), "gradient_accumulation_steps": _integer(1), "max_iters": _integer(0),
    "time_limit": _number(0, above=True, optional=True),
    "learning_rate": _number(0), "decay_lr": _boolean, "warmup_iters": _integer(0),
    "lr_decay_iters": _integer(0, optional=True), "min_lr": _number(0), "weight_decay": _number(0),
    "beta1": _number(0, 1, below=True), "beta2": _number(0, 1, below=True),
    "grad_clip": _number(0, optional=True), "dropout": _number(0, 1, below=True, optional=True),
    "device": _device, "dtype": _choice("auto", "float32", "bfloat16", "float16"), "use_amp": _boolean,
    "sdp_kernel": _choice("auto", "flash", "efficient", "math", "cudnn", None), "compile": _boolean,
    "num_threads": _integer(0, MAX_THREADS, optional=True), "fsdp": _boolean,
    "random_seed": _integer(0, MAX_TRAIN_SEED),
    "eval_interval": _integer(1), "eval_iters": _integer(1), "log_interval": _integer(1),
    "metrics_log": _text(), "tensorboard": _boolean, "progress": _boolean,
    "sample_interval": _integer(0), "sample_prompt": _text(), "sample_tokens": _integer(1, 1 << 20),
    "save_checkpoint_to": _text(optional=False), "save_interval": _integer(1, optional=True),
    "keep_last": _integer(0), "save_best": _boolean, "from_checkpoint": _text(), "resume": _boolean,
    "use_lora": _boolean, "lora_rank": _integer(1), "lora_alpha": _number(0, above=True),
    "lora_dropout": _number(0, 1, below=True), "lora_targets": _names,
}
assert set(CHECKS) == set(DEFAULTS), "every train config key has a check"


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
    """A config file's JSON object (ValueError for invalid JSON or anything but an object)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: a config must be a JSON object (key: value), got a {_json_type(value)}")
    return value
