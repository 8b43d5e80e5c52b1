"""Fuzzing the Python-reachable loaders with mutated files: vocabulary JSON, checkpoints, SFT JSONL records.

Each input is a valid file with random byte-level damage (flips, insertions of bytes that matter to the
format, deletions, truncation, duplicated spans), from a fixed seed so every run sees the same inputs. For
every input the loader must either raise its documented exception or return exactly what an independent
reference says the bytes mean. Hence: no crash (any other exception fails the test), no hang (a C-level hang
would stop the suite; every loader here is linear in its input) and no silent success on corrupt input,
where "corrupt" is defined per loader:

* vocabulary JSON: the reference (``reference_vocab``) decodes strict UTF-8 and strict JSON and applies the
  documented rules (four keys once each; vocab_size == len(itos); stoi and special_tokens point every token
  at its own itos slot; no empty or repeated token; <|unknown|> present). The loader accepts exactly the
  documents the reference accepts, with the same tokens and special flags. A mutation that yields another
  consistent vocabulary (there is no checksum) is not corruption by this definition and must load as written.
* checkpoints: a mutation is detectable when it changes what the file holds: every record's bytes are
  covered by its CRC-32 and the archive structure is checked, so the safe loader either raises ValueError
  or returns exactly the original content (the mutation hit bytes that carry nothing: padding, timestamps).
* JSONL records: each line is classified by the reference (invalid UTF-8, empty, malformed JSON, not an
  object, missing key, non-string value, lone surrogate, else good); SFT preparation must write exactly the
  good lines and count every other one under its reason, and with ``strict`` raise DataError exactly when a
  line is bad.
"""

from __future__ import annotations

import json
import random
import string

import numpy as np
import pytest
import torch
from nano.checkpoint import load_checkpoint
from nano.data import DataError, prepare_sft
from nano.tokenizer import Tokenizer

SEED = 20261206
UNKNOWN = "<|unknown|>"


def mutate(data: bytes, rng: random.Random, specials: bytes) -> bytes:
    """1-3 random byte-level edits; inserted bytes favour the format's own syntax (``specials``)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            out += bytes([rng.randrange(256)])
            continue
        i = rng.randrange(len(out))
        kind = rng.randrange(6)
        if kind == 0:
            out[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[i] = rng.choice(specials)
        elif kind == 2:
            out.insert(i, rng.choice(specials))
        elif kind == 3:
            del out[i: i + rng.randint(1, 8)]
        elif kind == 4:
            j = min(len(out), i + rng.randint(1, 16))
            out[i:i] = out[i:j]
        else:
            del out[i:]
    return bytes(out)


# ---- vocabulary JSON -----------------------------------------------------------------------------------
def _no_float(text):
    raise ValueError("not an integer")


def _strict_json(text: str):
    """Python's JSON with the strictness serde_json applies: no NaN/Infinity, no floats where the schema
    wants integers, objects kept as key lists so repeated keys are visible, no lone surrogates."""

    def no_constant(name):
        raise ValueError(name)

    return json.loads(text, object_pairs_hook=list, parse_constant=no_constant, parse_float=_no_float)


def _has_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


def reference_vocab(data: bytes) -> tuple[list[str], list[bool]] | None:
    """(tokens by id, special flags) when data is a valid vocabulary file, else None."""
    try:
        text = data.decode("utf-8")
        if not text.lstrip(" \t\n\r").startswith("{"):
            return None
        doc = _strict_json(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, list) or sorted(k for k, _ in doc) != ["itos", "special_tokens", "stoi", "vocab_size"]:
        return None
    fields = dict(doc)

    def is_id(v):
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64

    def pairs(v):
        return isinstance(v, list) and all(isinstance(k, str) and is_id(i) for k, i in v)

    itos, stoi, special_tokens, size = fields["itos"], fields["stoi"], fields["special_tokens"], fields["vocab_size"]
    if not (is_id(size) and isinstance(itos, list) and all(isinstance(t, str) for t in itos)
            and pairs(stoi) and pairs(special_tokens)):
        return None
    strings = [*itos, *(k for k, _ in stoi), *(k for k, _ in special_tokens)]
    if any(_has_surrogate(s) for s in strings):
        return None
    n = len(itos)
    if size != n or len(stoi) != n or any(i >= n or itos[i] != t for t, i in stoi):
        return None
    special = [False] * n
    for t, i in special_tokens:
        if i >= n or itos[i] != t or special[i]:
            return None
        special[i] = True
    if any(t == "" for t in itos) or len(set(itos)) != n or UNKNOWN not in itos:
        return None
    return itos, special


@pytest.fixture(scope="module")
def vocab_bytes() -> list[bytes]:
    small = {"vocab_size": 4, "stoi": {"<|padding|>": 0, UNKNOWN: 1, "a": 2, "中文": 3},
             "itos": ["<|padding|>", UNKNOWN, "a", "中文"], "special_tokens": {"<|padding|>": 0, UNKNOWN: 1}}
    built = Tokenizer.build_from_texts(["the quick brown fox 天地玄黄 宇宙洪荒\n"], 112)
    return [json.dumps(small).encode(), json.dumps(small, ensure_ascii=False, indent=1).encode(),
            built.to_json().encode()]


def test_vocabulary_loader_matches_the_reference_on_mutations(vocab_bytes, tmp_path):
    rng = random.Random(SEED)
    path = tmp_path / "v.json"
    specials = b'{}[]",:\\0123456789-.eE \n' + "中".encode() + b"\xff\xc3ut"
    outcomes = {"refused": 0, "loaded": 0}
    for n in range(1500):
        data = mutate(vocab_bytes[n % len(vocab_bytes)], rng, specials)
        expected = reference_vocab(data)
        path.write_bytes(data)
        try:
            tok = Tokenizer.from_file(path)
        except ValueError:
            assert expected is None, f"refused a valid vocabulary: {data[:300]!r}"
            outcomes["refused"] += 1
            continue
        assert expected is not None, f"accepted a corrupt vocabulary: {data[:300]!r}"
        assert tok.tokens() == expected[0]
        assert [tok.is_special(i) for i in range(tok.vocab_size)] == expected[1]
        outcomes["loaded"] += 1
    # both sides are exercised (edits of whitespace between tokens keep a file valid)
    assert outcomes["refused"] > 1000 and outcomes["loaded"] > 0, outcomes


def test_reference_vocab_accepts_the_originals(vocab_bytes):
    for data in vocab_bytes:
        tokens, special = reference_vocab(data)
        tok = Tokenizer.from_json(data.decode())
        assert tok.tokens() == tokens and [tok.is_special(i) for i in range(len(tokens))] == special


# ---- checkpoints ---------------------------------------------------------------------------------------
def _same(a, b) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and \
            torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_checkpoint_loader_refuses_or_returns_the_original(tmp_path):
    gen = torch.Generator().manual_seed(SEED)
    original = {"format": "nano-checkpoint", "version": 1, "step": 7,
                "model": {"tok_embeddings.weight": torch.randn(8, 4, generator=gen),
                          "norm.weight": torch.ones(4), "layers.0.w": torch.randn(3, 4, generator=gen)},
                "model_config": {"block_size": 8, "vocab_size": 8}, "tokenizer_json": '{"x": "中"}',
                "rng": [{"python": (3, tuple(range(5)), None), "numpy": ("MT19937", [1, 2, 3], 0, 0, 0.0)}]}
    good = tmp_path / "good.pt"
    torch.save(original, good)
    data = good.read_bytes()
    assert _same(load_checkpoint(good), original)
    rng = random.Random(SEED)
    path = tmp_path / "m.pt"
    outcomes = {"refused": 0, "same": 0}
    for _ in range(600):
        path.write_bytes(mutate(data, rng, b"PK\x03\x04\x00\xff.\x80q}"))
        try:
            loaded = load_checkpoint(path)
        except ValueError:
            outcomes["refused"] += 1
            continue
        assert _same(loaded, original), "a damaged checkpoint loaded with different content"
        outcomes["same"] += 1
    assert outcomes["refused"] > 400, outcomes


def test_a_flipped_bit_in_a_tensor_is_caught(tmp_path):
    """torch.load itself does not check record CRCs; the safe loader does."""
    import io
    import zipfile

    t = torch.arange(64.0)
    buf = io.BytesIO()
    torch.save({"format": "nano-checkpoint", "version": 1, "model": {"w": t}, "model_config": {}, "step": 0},
               buf)
    data = bytearray(buf.getvalue())
    info = next(i for i in zipfile.ZipFile(io.BytesIO(bytes(data))).infolist() if i.filename.endswith("data/0"))
    start = info.header_offset + 30 + int.from_bytes(data[info.header_offset + 26: info.header_offset + 28], "little") \
        + int.from_bytes(data[info.header_offset + 28: info.header_offset + 30], "little")
    data[start + 5] ^= 0x40
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["w"], t)  # torch alone: silent
    with pytest.raises(ValueError, match="checksum"):
        load_checkpoint(path)


# ---- GGUF files ------------------------------------------------------------------------------------------
def test_gguf_loader_refuses_or_loads_what_the_gguf_package_reads(tmp_path):
    """A GGUF has no checksum, so a damaged one may still be a valid model; the loader must then hold exactly
    the tensors the independent reader (the `gguf` package) finds in the same bytes. Anything else is
    refused with ValueError (a panic would surface as RuntimeError and fail the test)."""
    gguf = pytest.importorskip("gguf")
    import nano.export
    from nano.export_gguf import llama_names
    from test_export_gguf import byte_tokenizer, checkpoint, small_model

    tok = byte_tokenizer()
    model = small_model(tok.vocab_size)
    good = nano.export.export_gguf(tmp_path / "good.gguf", checkpoint=checkpoint(tok, model))
    names = llama_names(model.config.n_layer)
    data = good.read_bytes()
    rng = random.Random(SEED)
    path = tmp_path / "m.gguf"
    outcomes = {"refused": 0, "loaded": 0}
    for _ in range(300):
        path.write_bytes(mutate(data, rng, b"GGUF\x00\x01\x03\x08\x09\xff"))
        try:
            loaded = nano.export.read_bin(path)
        except ValueError:
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        theirs = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}
        for nano_name, values in loaded["tensors"].items():
            np.testing.assert_array_equal(values.ravel(), theirs[names[nano_name]].ravel(), err_msg=nano_name)
    assert outcomes["refused"] > 50 and outcomes["loaded"] > 0, outcomes


# ---- JSONL records (SFT preparation) ----------------------------------------------------------------------
def classify(line: bytes) -> str:
    """The reason a line is skipped, or "good"."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    text = text.removesuffix("\r")
    if not text.strip():
        return "empty line"
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return "malformed JSON"
    if not isinstance(record, dict):
        return "not a JSON object"
    if not all(k in record for k in ("question", "answer")):
        return "missing key"
    if not all(isinstance(record[k], str) for k in ("question", "answer")):
        return "value is not a string"
    if any(_has_surrogate(record[k]) for k in ("question", "answer")):
        return "lone surrogate"
    return "good"


def _lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return lines if data else []


@pytest.fixture(scope="module")
def sft_vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "vocab.json"
    Tokenizer.build_from_texts([string.ascii_letters + " 天地玄黄"], 112).save(path)
    return path


def test_sft_preparation_skips_exactly_the_bad_records(sft_vocab, tmp_path):
    rng = random.Random(SEED)
    words = ["fox", "天地", "a\\u00e9", "\\ud83d\\ude00", "x y", ""]
    # valid JSON that is not a usable record (each skip reason), and a good one with an extra key
    odd = [b"[1]", b'"q"', b"3", b'{"question": "a"}', b'{"question": 1, "answer": "b"}', b"   ",
           b'{"question": "\\ud800", "answer": "b"}', b'{"question": "a", "answer": "b", "x": null}']
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    specials = b'{}[]",:\\\n\r nu\xff\xc3\xa9'
    lines_seen = 0
    for n in range(250):
        lines = [rng.choice(odd) if rng.random() < 0.2 else
                 json.dumps({"question": rng.choice(words), "answer": rng.choice(words)}).encode()
                 for _ in range(rng.randint(1, 12))]
        data = mutate(b"\n".join(lines) + b"\n", rng, specials)
        src.write_bytes(data)
        reasons = [classify(line) for line in _lines(data)]
        lines_seen += len(reasons)
        bad = {r: reasons.count(r) for r in set(reasons) - {"good"}}
        strict = n % 5 == 0
        try:
            s = prepare_sft(src, out, sft_vocab, 4096, val_fraction=0.0, strict=strict, progress=False)
        except DataError as e:
            strictly_bad = set(bad) - {"empty line"}
            assert (strict and strictly_bad) or reasons.count("good") == 0, (str(e), reasons)
            continue
        assert not (strict and set(bad) - {"empty line"}), "strict mode let a bad record through"
        assert s["records_written"] == reasons.count("good"), (data, reasons)
        assert s["skipped"] == bad, (data, reasons)
        assert s["records_in"] == len(reasons)
    assert lines_seen > 1000
