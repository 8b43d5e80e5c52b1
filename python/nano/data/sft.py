"""SFT data: JSONL {"question", "answer"} → fixed-length samples with a per-token loss mask.

Template at the token level (special ids inserted as ids, never by matching text):
    <|instruct_mark|> question <|response_mark|> answer <|eos|>
mask[j] = 1 when token j is a trained *target*: every answer token and the final <|eos|>.
Each stored sample is exactly block_size + 1 tokens: one sample padded with <|padding|> (mask 0), or with
``pack=True`` as many whole samples as fit, then padding.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from nano import _native
from nano.data.common import (
    input_paths,
    load_tokenizer,
    progress_bar,
    special_id,
    total_size,
    validation_lines,
)
from nano.data.records import DataError, Problems, check_inputs, count_lines, iter_batches
from nano.data.writer import DatasetWriter
from nano.tokenizer import EOS, INSTRUCT_MARK, PADDING, RESPONSE_MARK, UNKNOWN

OVERLONG = ("truncate", "drop")
# Every sample is stored padded to block_size + 1 tokens, so a huge block size multiplies the output (and
# the time to write it) by that much for each record: past a 64K-token context this is a mistake, not a plan.
MAX_BLOCK_SIZE = 1 << 16
DRAIN_TOKENS = 1 << 22  # padded rows held before they are written


def _parse(batch, problems: Problems) -> list[tuple[int, str, str]]:
    """(line index in batch, question, answer) of the well-formed records; the others are counted."""
    pairs = []
    for i, text in enumerate(batch.texts):
        if text is None:
            batch.skip_bad(i, problems)
            continue
        if not text.strip():
            problems.counts["empty line"] += 1
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            problems.skip(*batch.where(i), "malformed JSON", e.msg + f" at column {e.colno}")
            continue
        if not isinstance(record, dict):
            problems.skip(*batch.where(i), "not a JSON object")
            continue
        missing = [k for k in ("question", "answer") if k not in record]
        if missing:
            problems.skip(*batch.where(i), "missing key", repr(missing[0]))
            continue
        wrong = [k for k in ("question", "answer") if not isinstance(record[k], str)]
        if wrong:
            problems.skip(*batch.where(i), "value is not a string", repr(wrong[0]))
            continue
        # JSON escapes can spell half of a UTF-16 pair ("\\ud800"): not text, and no tokenizer can take it.
        lone = [k for k in ("question", "answer") if "\\u" in text and not _is_text(record[k])]
        if lone:
            problems.skip(*batch.where(i), "lone surrogate", f"in {lone[0]!r} (a \\uD800-\\uDFFF escape "
                          "that is not half of a pair)")
            continue
        pairs.append((i, record["question"], record["answer"]))
    return pairs


def _is_text(value: str) -> bool:
    """False for a string holding a lone UTF-16 surrogate (it has no UTF-8 form)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _SampleBuilder:
    """Turns encoded (question, answer) pairs into block_size+1 rows of tokens and mask for one split."""

    def __init__(self, ids: dict, block_size: int, pack: bool, overlong: str):
        self.ids, self.length, self.pack, self.overlong = ids, block_size + 1, pack, overlong
        self.rows_tokens: list[list[int]] = []
        self.rows_mask: list[list[int]] = []
        self.cur_tokens: list[int] = []
        self.cur_mask: list[int] = []
        self.samples = self.examples = self.truncated = 0

    def add(self, question: list[int], answer: list[int]) -> str | None:
        """Add one example; returns a skip reason or None."""
        ids = self.ids
        prompt = _native.instruction_ids(ids["instruct"], question, ids["response"])
        tokens = [*prompt, *answer, ids["eos"]]
        mask = [0] * len(prompt) + [1] * (len(answer) + 1)
        if len(tokens) > self.length:
            if self.overlong == "drop":
                return "overlong (dropped)"
            tokens, mask = tokens[: self.length], mask[: self.length]
            if not any(mask):
                return "overlong (no answer token fits)"
            self.truncated += 1
        if not self.pack or len(self.cur_tokens) + len(tokens) > self.length:
            self.flush()
        self.cur_tokens += tokens
        self.cur_mask += mask
        self.examples += 1
        return None

    def flush(self) -> None:
        if not self.cur_tokens:
            return
        self.rows_tokens.append(self.cur_tokens)
        self.rows_mask.append(self.cur_mask)
        self.cur_tokens, self.cur_mask = [], []
        self.samples += 1

    @property
    def pending_tokens(self) -> int:
        """Tokens the completed rows take once padded (drain before this grows past a memory budget)."""
        return len(self.rows_tokens) * self.length

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        """Completed rows so far, padded and concatenated (the row being packed stays)."""
        n = len(self.rows_tokens)
        tokens = np.full((n, self.length), self.ids["padding"], dtype=np.int64)
        mask = np.zeros((n, self.length), dtype=np.uint8)
        for row, (t, m) in enumerate(zip(self.rows_tokens, self.rows_mask, strict=True)):
            tokens[row, : len(t)] = t
            mask[row, : len(m)] = m
        self.rows_tokens, self.rows_mask = [], []
        return tokens.ravel(), mask.ravel()


def write_rows(writer, split: str, rows: tuple[np.ndarray, np.ndarray], unknown: int | None) -> int:
    """Append finished rows; returns their count of unknown tokens."""
    writer.append(split, *rows)
    return 0 if unknown is None else int(np.count_nonzero(rows[0] == unknown))


def prepare_sft(
    inputs,
    out_dir,
    tokenizer,
    block_size: int,
    val_fraction: float = 0.05,
    seed: int = 0,
    pack: bool = False,
    overlong: str = "truncate",
    strict: bool = False,
    *,
    threads: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Build a prepared SFT dataset directory from JSONL files; returns a summary dict."""
    started = time.perf_counter()
    if overlong not in OVERLONG:
        raise ValueError(f"overlong must be one of {OVERLONG}, got {overlong!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or not 2 <= block_size <= MAX_BLOCK_SIZE:
        raise ValueError(f"block_size must be an integer from 2 to {MAX_BLOCK_SIZE}, got {block_size!r}")
    paths = check_inputs(inputs)
    tok = load_tokenizer(tokenizer)
    ids = {
        "instruct": special_id(tok, INSTRUCT_MARK),
        "response": special_id(tok, RESPONSE_MARK),
        "eos": special_id(tok, EOS),
        "padding": special_id(tok, PADDING),
    }
    unknown = tok.token_to_id(UNKNOWN)
    problems = Problems(strict=strict)
    is_val = validation_lines(count_lines(paths), val_fraction, seed)
    builders = {s: _SampleBuilder(ids, block_size, pack, overlong) for s in ("train", "val")}
    n_lines = n_unknown = 0
    n_bytes = total_size(paths)

    with (
        DatasetWriter(out_dir, tok, "sft", with_mask=True, inputs=input_paths(paths, tokenizer)) as writer,
        progress_bar(n_bytes, "sft", progress) as bar,
    ):
        for first, batch in iter_batches(paths, on_bytes=bar.update):
            n_lines += len(batch.texts)
            pairs = _parse(batch, problems)
            if not pairs:
                continue
            questions = tok.encode_batch([q for _, q, _ in pairs], allow_special=False, threads=threads)
            answers = tok.encode_batch([a for _, _, a in pairs], allow_special=False, threads=threads)
            for (i, _, _), q, a in zip(pairs, questions, answers, strict=True):
                split = "val" if is_val[first + i] else "train"
                if builders[split].pending_tokens >= DRAIN_TOKENS:  # padding must not pile up in memory
                    n_unknown += write_rows(writer, split, builders[split].drain(), unknown)
                reason = builders[split].add(q, a)
                if reason is not None:
                    if strict:
                        path, line, offset = batch.where(i)
                        raise DataError(f"{path}:{line} (byte {offset}): {reason}")
                    problems.counts[reason] += 1
            for split, builder in builders.items():
                n_unknown += write_rows(writer, split, builder.drain(), unknown)
        for split, builder in builders.items():
            builder.flush()
            n_unknown += write_rows(writer, split, builder.drain(), unknown)
        examples = {s: b.examples for s, b in builders.items()}
        if examples["train"] + examples["val"] == 0:
            raise DataError(f"empty corpus: no usable record in {', '.join(map(str, paths))}")
        if examples["train"] == 0:
            raise DataError("no training sample left after the validation split")
        seconds = time.perf_counter() - started
        extra = {
            "pack": pack,
            "overlong": overlong,
            "val_fraction": val_fraction,
            "seed": seed,
            "sources": [str(Path(p)) for p in paths],
        }
        split_items = {s: {"samples": b.samples, "examples": b.examples} for s, b in builders.items()}
        meta = writer.commit(split_items, block_size, extra)

    n_tokens = sum(meta["splits"][s]["tokens"] for s in builders)
    n_written = examples["train"] + examples["val"]
    return {
        "out_dir": str(out_dir),
        "kind": "sft",
        "dtype": meta["dtype"],
        "tokenizer_hash": meta["tokenizer_hash"],
        "block_size": block_size,
        "splits": meta["splits"],
        "records_in": n_lines,
        "records_written": n_written,
        "truncated": sum(b.truncated for b in builders.values()),
        "skipped": dict(problems.counts),
        "tokens": n_tokens,
        "unknown_tokens": n_unknown,
        "unknown_rate": n_unknown / max(n_tokens, 1),
        "bytes_in": n_bytes,
        "seconds": seconds,
        "mb_per_s": n_bytes / 1e6 / max(seconds, 1e-9),
    }
