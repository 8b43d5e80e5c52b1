"""Pretraining data: text files (one document per non-empty line) → token files split train/val.

Each document is encoded by the Rust tokenizer (in parallel, batch by batch), followed by <|eos|> and
optionally preceded by <|bos|>. Whole documents go to either train or val (seeded, exact fraction).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nano.data.common import (
    input_paths,
    load_tokenizer,
    progress_bar,
    special_id,
    total_size,
    validation_lines,
)
from nano.data.records import DataError, Problems, check_inputs, count_lines, iter_batches
from nano.data.writer import DatasetWriter, token_dtype
from nano.tokenizer import BOS, EOS, UNKNOWN


def _encode(tokenizer, texts: list[str], eos: int, bos: int | None, dtype: str, threads) -> np.ndarray:
    ids = tokenizer.encode_to_numpy(
        texts, allow_special=False, threads=threads, dtype=dtype, separator_id=eos
    )
    if bos is None or len(texts) == 0:
        return ids
    # Text is encoded with allow_special=False, so every eos is a document end written by us.
    ends = np.flatnonzero(ids == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return np.insert(ids, starts, bos)


def prepare_pretrain(
    inputs,
    out_dir,
    tokenizer,
    val_fraction: float = 0.01,
    seed: int = 0,
    add_bos: bool = False,
    threads: int | None = None,
    *,
    strict: bool = False,
    progress: bool | None = None,
) -> dict:
    """Tokenize text files into a prepared dataset directory; returns a summary dict."""
    started = time.perf_counter()
    paths = check_inputs(inputs)
    tok = load_tokenizer(tokenizer)
    eos = special_id(tok, EOS)
    bos = special_id(tok, BOS) if add_bos else None
    unknown = tok.token_to_id(UNKNOWN)
    dtype = token_dtype(tok.vocab_size)
    problems = Problems(strict=strict)
    is_val = validation_lines(count_lines(paths), val_fraction, seed)
    docs = {"train": 0, "val": 0}
    n_unknown = n_lines = 0
    n_bytes = total_size(paths)

    def encode_and_write(chosen: dict[str, list[str]]) -> None:
        nonlocal n_unknown
        for split, texts in chosen.items():
            if texts:
                ids = _encode(tok, texts, eos, bos, dtype, threads)
                if unknown is not None:
                    n_unknown += int(np.count_nonzero(ids == unknown))
                writer.append(split, ids)
                docs[split] += len(texts)

    with (
        DatasetWriter(out_dir, tok, "pretrain", with_mask=False, inputs=input_paths(paths, tokenizer)) as writer,
        progress_bar(n_bytes, "pretrain", progress) as bar,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        # Encoding and writing batch i (Rust, GIL released) overlaps reading and splitting batch i+1.
        pending = None
        for first, batch in iter_batches(paths, on_bytes=bar.update):
            texts = batch.texts
            n_lines += len(texts)
            is_val_here = is_val[first : first + len(texts)]
            for i in batch.bad:
                batch.skip_bad(i, problems)
            empty = texts.count("")
            if empty:
                problems.counts["empty line"] += empty
            if is_val_here.any():
                flags = is_val_here.tolist()
                chosen = {
                    "train": [t for t, v in zip(texts, flags, strict=True) if t and not v],
                    "val": [t for t, v in zip(texts, flags, strict=True) if t and v],
                }
            else:
                chosen = {"train": [t for t in texts if t] if empty or batch.bad else texts, "val": []}
            if pending is not None:
                pending.result()
            pending = pool.submit(encode_and_write, chosen)
        if pending is not None:
            pending.result()
        if docs["train"] + docs["val"] == 0:
            raise DataError(f"empty corpus: no document in {', '.join(map(str, paths))}")
        if docs["train"] == 0:
            raise DataError("no training document left after the validation split")
        seconds = time.perf_counter() - started
        extra = {
            "add_bos": add_bos,
            "eos_id": eos,
            "val_fraction": val_fraction,
            "seed": seed,
            "sources": [str(Path(p)) for p in paths],
        }
        meta = writer.commit({s: {"documents": docs[s]} for s in docs}, None, extra)

    n_tokens = sum(meta["splits"][s]["tokens"] for s in docs)
    return {
        "out_dir": str(out_dir),
        "kind": "pretrain",
        "dtype": meta["dtype"],
        "tokenizer_hash": meta["tokenizer_hash"],
        "splits": meta["splits"],
        "records_in": n_lines,
        "records_written": docs["train"] + docs["val"],
        "skipped": dict(problems.counts),
        "tokens": n_tokens,
        "unknown_tokens": n_unknown,
        "unknown_rate": n_unknown / max(n_tokens, 1),
        "bytes_in": n_bytes,
        "seconds": seconds,
        "mb_per_s": n_bytes / 1e6 / max(seconds, 1e-9),
    }
