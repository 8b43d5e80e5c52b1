"""LoRA adapters for the Nano transformer.

An adapted projection keeps its base weight under the original name (``layers.0.attention.wq.weight``) and
gains ``lora_A`` [rank, in] and ``lora_B`` [out, rank]; its output is ``W x + (alpha/rank) * B (A x)``.
B starts at zero, so a fresh adapter is the identity. Only adapter parameters train.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nano._atomic import atomic_torch_save
from nano.model import ModelConfig, Transformer, base_hash

FORMAT = "nano-lora"
VERSION = 1
ATTENTION_TARGETS = ("wq", "wk", "wv", "wo")
FFN_TARGETS = ("w1", "w2", "w3")


@dataclass
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(ATTENTION_TARGETS))

    def __post_init__(self) -> None:
        if int(self.rank) < 1:
            raise ValueError(f"lora rank must be >= 1, got {self.rank}")
        unknown = set(self.targets) - set(ATTENTION_TARGETS + FFN_TARGETS)
        if unknown:
            raise ValueError(f"unknown LoRA targets {sorted(unknown)}; choose from wq wk wv wo w1 w2 w3")
        self.rank = int(self.rank)
        self.targets = list(self.targets)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @classmethod
    def from_dict(cls, d: dict) -> LoraConfig:
        return cls(**{k: d[k] for k in ("rank", "alpha", "dropout", "targets") if k in d})


class LoRALinear(nn.Module):
    """A Linear layer with a low-rank update; shares the base weight Parameter (state_dict name kept)."""

    def __init__(self, base: nn.Linear, config: LoraConfig):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.scale = config.scale
        self.lora_A = nn.Parameter(torch.empty(config.rank, self.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, config.rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(config.dropout)
        self.merged = False
        self.enabled = True

    def delta(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.enabled and not self.merged:
            a = self.lora_A.to(x.dtype)
            b = self.lora_B.to(x.dtype)
            y = y + F.linear(F.linear(self.lora_dropout(x), a), b) * self.scale
        return y

    @torch.no_grad()
    def merge(self) -> None:
        if self.enabled and not self.merged:
            self.weight += self.delta().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta().to(self.weight.dtype)
            self.merged = False


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def apply_lora(model: Transformer, config: LoraConfig) -> Transformer:
    """Insert adapters on the configured projections; freeze everything else. Returns the model."""
    if lora_modules(model):
        raise ValueError("the model already has LoRA adapters")
    model.lora_base_hash = base_hash(model.state_dict())
    model.lora_config = config
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.layers:
        for parent in (layer.attention, layer.feed_forward):
            for name in config.targets:
                base = getattr(parent, name, None)
                if isinstance(base, nn.Linear):
                    setattr(parent, name, LoRALinear(base, config))
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if ".lora_" in k}


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base weights without adapters (unmerged), e.g. for export or hashing."""
    merged = [m for m in lora_modules(model).values() if m.merged]
    for m in merged:
        m.unmerge()
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    for m in merged:
        m.merge()
    return sd


def merge_lora(model: nn.Module) -> None:
    """Fold adapters into the base weights (idempotent)."""
    for m in lora_modules(model).values():
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take merged adapters back out of the base weights (idempotent)."""
    for m in lora_modules(model).values():
        m.unmerge()


def set_lora_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch adapters off (base model output) or on; a merged adapter is unmerged first."""
    for m in lora_modules(model).values():
        if not enabled:
            m.unmerge()
        m.enabled = enabled


def lora_payload(model: Transformer) -> dict:
    """The adapter-only payload (format nano-lora v1) that `save_lora` writes and `nano.export.export_lora`
    takes."""
    if not lora_modules(model):
        raise ValueError("the model has no LoRA adapters to save")
    return {
        "format": FORMAT,
        "version": VERSION,
        "lora_config": asdict(model.lora_config),
        "model_config": model.config.to_dict(),
        "base_hash": model.lora_base_hash,
        "state_dict": lora_state_dict(model),
    }


def save_lora(model: Transformer, path: str | Path) -> Path:
    """Write the adapter-only file (format nano-lora v1) atomically."""
    return atomic_torch_save(lora_payload(model), path)


def read_lora(path_or_payload) -> dict:
    payload = path_or_payload
    if not isinstance(payload, dict):
        from nano.checkpoint import safe_torch_load

        payload = safe_torch_load(Path(path_or_payload), what="LoRA file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if not isinstance(payload, dict):
            raise ValueError(f"not a LoRA file: found a {type(payload).__name__}")
        raise ValueError(f"not a LoRA file: format is {payload.get('format')!r}, expected {FORMAT!r}")
    if payload.get("version") != VERSION:
        raise ValueError(f"unsupported LoRA file version {payload.get('version')!r}")
    return payload


def load_lora(model: Transformer, path_or_payload) -> Transformer:
    """Attach a saved adapter; refuses one made for a different base (shape or weights)."""
    payload = read_lora(path_or_payload)
    file_cfg = ModelConfig.from_dict(payload["model_config"])
    if file_cfg != model.config:
        diff = {k: (v, getattr(model.config, k)) for k, v in file_cfg.to_dict().items()
                if getattr(model.config, k) != v}
        raise ValueError(f"LoRA adapter was made for a different model shape: {diff} (adapter, model)")
    have = getattr(model, "lora_base_hash", None) or base_hash(model.state_dict())
    if payload["base_hash"] != have:
        raise ValueError(
            f"LoRA adapter belongs to base {payload['base_hash']}, this model is base {have}; refusing"
        )
    if not lora_modules(model):
        apply_lora(model, LoraConfig.from_dict(payload["lora_config"]))
    expected = set(lora_state_dict(model))
    got = set(payload["state_dict"])
    if expected != got:
        raise ValueError(f"LoRA parameters do not match: missing {sorted(expected - got)[:4]}, "
                         f"unexpected {sorted(got - expected)[:4]}")
    unmerge_lora(model)
    model.load_state_dict(payload["state_dict"], strict=False)
    return model
