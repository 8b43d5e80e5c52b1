"""Observability: achieved FLOP/s and MFU against device peaks, a JSONL metrics log, TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

# Dense peak FLOP/s per device, datasheet values: (16-bit tensor cores, TF32 tensor cores, plain fp32).
PEAK_FLOPS = [
    ("H200", 989e12, 494e12, 67e12),
    ("H100", 989e12, 494e12, 67e12),
    ("A100", 312e12, 156e12, 19.5e12),
    ("A800", 312e12, 156e12, 19.5e12),
    ("L40S", 362e12, 183e12, 91.6e12),
    ("L4", 121e12, 60e12, 30.3e12),
    ("A10", 125e12, 62.5e12, 31.2e12),
    ("RTX 4090", 165e12, 82.6e12, 82.6e12),
    ("RTX 3090", 71e12, 35.6e12, 35.6e12),
    ("V100", 125e12, 15.7e12, 15.7e12),  # no TF32: fp32 matmuls run on the CUDA cores
    ("T4", 65e12, 8.1e12, 8.1e12),
]


def peak_for(name: str, dtype: torch.dtype, tf32: bool) -> float | None:
    """Peak FLOP/s of the device called `name` for matmuls in `dtype` (f32 ones on TF32 tensor cores when
    `tf32`), or None for an unknown device."""
    for key, half, tf32_peak, fp32 in PEAK_FLOPS:
        if key in name:
            if dtype in (torch.bfloat16, torch.float16):
                return half
            return tf32_peak if tf32 else fp32
    return None


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """Peak FLOP/s of one device for this precision, or None when unknown (always None on CPU/MPS).
    f32 matmuls count against the TF32 peak only when torch is allowed to use TF32 (off by default)."""
    if device.type != "cuda":
        return None
    tf32 = torch.get_float32_matmul_precision() != "highest"  # also reflects backends.cuda.matmul.allow_tf32
    return peak_for(torch.cuda.get_device_name(device), dtype, tf32)


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
