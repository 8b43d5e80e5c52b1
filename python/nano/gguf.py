"""A small GGUF (version 3) writer and ggml's Q8_0 / Q4_0 block quantizers, in NumPy.

GGUF, llama.cpp's model file: little-endian throughout,

    magic "GGUF" | u32 version 3 | u64 tensor count | u64 metadata count
    metadata: key (u64 length + UTF-8) | u32 value type | value
    tensor infos: name | u32 n_dims | u64 dims (innermost first) | u32 ggml type | u64 offset
    zero padding to the alignment, then tensor data (each tensor at a multiple of the alignment)

Strings are a u64 byte length and the bytes; an array is a u32 element type, a u64 count and the
elements. Only what Nano writes is supported. The `gguf` package on PyPI reads these files back in the
tests; the package itself never needs it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["GGML_TYPES", "Tensor", "quantize_q8_0", "quantize_q4_0", "encode_tensor", "write_gguf"]

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32
QK = 32  # values per Q8_0 / Q4_0 block

# ggml_type ids and bytes per block of QK values (f32/f16: per value).
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}

# Metadata value types.
_UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY, _UINT64 = 4, 5, 6, 7, 8, 9, 10


class Tensor:
    """One tensor to write: its name, ggml type name, shape in PyTorch order (outermost first) and data."""

    __slots__ = ("name", "dtype", "shape", "data")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], data: bytes):
        self.name, self.dtype, self.shape, self.data = name, dtype, tuple(int(d) for d in shape), data


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C's roundf: halves away from zero (NumPy's rint rounds them to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _blocks(w: np.ndarray) -> np.ndarray:
    w = np.ascontiguousarray(w, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] % QK:
        raise ValueError(f"block quantization needs a 2-D tensor with a multiple of {QK} columns, got {w.shape}")
    return w.reshape(-1, QK)


def quantize_q8_0(w: np.ndarray) -> bytes:
    """ggml's block_q8_0 per 32 values: f16 scale d, int8 codes.

    The codes are Nano's (``quantize_q8_0`` in the kernels crate): d = max|x| / 127 in f32,
    q = round(x / d) halves away from zero. Only the stored scale is rounded to f16.
    """
    x = _blocks(w)
    d = (np.abs(x).max(axis=1) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(d[:, None] != 0, x / d[:, None], np.float32(0))
    q = np.clip(_round_half_away(v), -127, 127).astype(np.int8)
    out = np.empty(len(x), dtype=[("d", "<f2"), ("qs", "i1", QK)])
    out["d"] = d.astype(np.float16)
    out["qs"] = q
    return out.tobytes()


def quantize_q4_0(w: np.ndarray) -> bytes:
    """ggml's block_q4_0 per 32 values: f16 scale d, 4-bit codes q + 8 with value j in the low nibble
    of byte j and value j + 16 in its high nibble.

    The codes are Nano's (``quantize_q4_0`` in the kernels crate): d = (the value of largest
    magnitude, the first on ties) / -8 in f32, q = clamp(round(x / d), -8, 7), halves away from zero.
    """
    x = _blocks(w)
    idx = np.abs(x).argmax(axis=1)  # the first of equal magnitudes, as Nano's strict `>` scan
    d = (x[np.arange(len(x)), idx] / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(d[:, None] != 0, x / d[:, None], np.float32(0))
    q = (np.clip(_round_half_away(v), -8, 7) + 8).astype(np.uint8)
    out = np.empty(len(x), dtype=[("d", "<f2"), ("qs", "u1", QK // 2)])
    out["d"] = d.astype(np.float16)
    out["qs"] = q[:, : QK // 2] | (q[:, QK // 2:] << 4)
    return out.tobytes()


def encode_tensor(name: str, w: np.ndarray, dtype: str) -> Tensor:
    """A float array as a `Tensor` of ggml type `dtype` (f32, f16, q8_0, q4_0)."""
    w = np.asarray(w, dtype=np.float32)
    if dtype == "f32":
        data = np.ascontiguousarray(w, dtype="<f4").tobytes()
    elif dtype == "f16":
        data = np.ascontiguousarray(w, dtype="<f2").tobytes()
    elif dtype == "q8_0":
        data = quantize_q8_0(w)
    elif dtype == "q4_0":
        data = quantize_q4_0(w)
    else:
        raise ValueError(f"unknown ggml type {dtype!r}")
    return Tensor(name, dtype, w.shape, data)


def _string(s: str | bytes) -> bytes:
    b = s if isinstance(s, bytes) else s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(v) -> bytes:
    """Type tag and payload of one metadata value (bool, int, float, str (UTF-8) or bytes, or a list
    of one kind)."""
    if isinstance(v, bool):
        return struct.pack("<I?", _BOOL, v)
    if isinstance(v, int):
        if 0 <= v < 2**32:
            return struct.pack("<II", _UINT32, v)
        if -(2**31) <= v < 0:
            return struct.pack("<Ii", _INT32, v)
        if 0 <= v < 2**64:
            return struct.pack("<IQ", _UINT64, v)
        raise ValueError(f"integer {v} does not fit a GGUF metadata value")
    if isinstance(v, float):
        return struct.pack("<If", _FLOAT32, v)
    if isinstance(v, (str, bytes)):
        return struct.pack("<I", _STRING) + _string(v)
    if isinstance(v, (list, tuple)):
        return _array(v)
    raise TypeError(f"unsupported GGUF metadata value {v!r}")


def _array(items) -> bytes:
    if not items:
        raise ValueError("empty GGUF arrays are not written")
    if all(isinstance(x, (str, bytes)) for x in items):
        return struct.pack("<IIQ", _ARRAY, _STRING, len(items)) + b"".join(_string(x) for x in items)
    if all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        arr = np.asarray(items, dtype="<i4")
        if not np.array_equal(arr, items):
            raise ValueError("integer array values must fit int32")
        return struct.pack("<IIQ", _ARRAY, _INT32, len(items)) + arr.tobytes()
    if all(isinstance(x, float) for x in items):
        return struct.pack("<IIQ", _ARRAY, _FLOAT32, len(items)) + np.asarray(items, dtype="<f4").tobytes()
    raise TypeError("GGUF arrays hold one kind of value: all str, all int or all float")


def _pad(n: int) -> int:
    return -n % ALIGNMENT


def write_gguf(path, metadata: dict, tensors: Iterable[Tensor]) -> Path:
    """Writes a GGUF v3 file atomically (temporary file in the same directory, then rename).

    `metadata` keys are written in insertion order; ints become u32 (i32 when negative, u64 when
    large), floats f32, lists arrays (ints as int32).
    """
    path = Path(path)
    tensors = list(tensors)
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ValueError("tensor names must be unique")
    head = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(metadata))]
    for key, value in metadata.items():
        head.append(_string(key) + _value(value))
    offset = 0
    for t in tensors:
        if t.dtype not in GGML_TYPES:
            raise ValueError(f"tensor {t.name}: unknown ggml type {t.dtype!r}")
        dims = t.shape[::-1]  # ggml lists the innermost dimension first
        head.append(_string(t.name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, GGML_TYPES[t.dtype], offset))
        offset += len(t.data) + _pad(len(t.data))
    header = b"".join(head)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(header + b"\0" * _pad(len(header)))
            for t in tensors:
                f.write(t.data)
                f.write(b"\0" * _pad(len(t.data)))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
