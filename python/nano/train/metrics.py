"""Observability: achieved FLOP/s and MFU against device peaks, a JSONL metrics log, TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

# Dense peak FLOP/s per device: (16-bit tensor cores, fp32 incl. TF32 where torch uses it). Datasheet values.
PEAK_FLOPS = [
    ("H200", 989e12, 494e12),
    ("H100", 989e12, 494e12),
    ("A100", 312e12, 156e12),
    ("A800", 312e12, 156e12),
    ("L40S", 362e12, 183e12),
    ("L4", 121e12, 60e12),
    ("A10", 125e12, 62e12),
    ("RTX 4090", 165e12, 83e12),
    ("RTX 3090", 71e12, 36e12),
    ("V100", 125e12, 15.7e12),
    ("T4", 65e12, 8.1e12),
]


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s of one device for this precision, or None when unknown (always None on CPU/MPS)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, half, single in PEAK_FLOPS:
        if key in name:
            return half if dtype in (torch.bfloat16, torch.float16) else single
    return None


class MetricsLog:
    """Appends one JSON object per record to a file; mirrors scalars to TensorBoard when available."""

    def __init__(self, path: str | Path | None, tensorboard_dir: str | Path | None = None):
        self.path = Path(path) if path else None
        self.started = time.time()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tb = None
        if tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the JSONL log is enough
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict) -> None:
        record = {"time": round(time.time() - self.started, 3), **record}
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            split = record.get("split", "train")
            for key, value in record.items():
                if key not in ("step", "split", "time") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{split}/{key}", value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
