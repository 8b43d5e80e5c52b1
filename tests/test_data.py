"""Data preparation: pretrain round trip and split, SFT template and masks token by token, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from nano.data import DataError, prepare_pretrain, prepare_sft
from nano.data.loader import BlockLoader
from nano.tokenizer import Tokenizer

PAD, UNK, BOS, EOS, INST, RESP = 0, 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def tok(shared_data):
    return Tokenizer.from_file(shared_data / "tokenizer_16384.json")


@pytest.fixture(scope="module")
def documents(shared_data, tok):
    """Distinct in-vocabulary paragraphs (so decoding gives the text back), Chinese and English."""
    lines = (shared_data / "pretrain_psycho.txt").read_text(encoding="utf-8").splitlines()
    docs = [line for line in lines[:400] if line and UNK not in tok.encode(line)]
    docs += [f"the antenna {i} is connected to the radio station" for i in range(40)]
    assert len(set(docs)) == len(docs) > 300
    return docs


def read_split(out, split, meta):
    return np.fromfile(out / f"{split}.tokens", dtype=meta["dtype"])


def split_documents(ids: np.ndarray, tok, bos: bool) -> list[str]:
    ends = np.flatnonzero(ids == EOS)
    assert len(ids) == 0 or ends[-1] == len(ids) - 1, "every document ends with <|eos|>"
    docs, start = [], 0
    for end in ends:
        doc = ids[start:end]
        if bos:
            assert doc[0] == BOS
            doc = doc[1:]
        assert BOS not in doc
        docs.append(tok.decode(doc))
        start = end + 1
    return docs


@pytest.mark.parametrize("add_bos", [False, True])
def test_pretrain_round_trip_and_disjoint_split(tmp_path, tok, documents, add_bos):
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(documents[:200]) + "\n\n" + "\n".join(documents[200:]), encoding="utf-8")
    out = tmp_path / "ds"
    summary = prepare_pretrain([src], out, tok, val_fraction=0.1, seed=4, add_bos=add_bos, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == "nano-tokens" and meta["version"] == 1 and meta["kind"] == "pretrain"
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == tok.vocab_size
    assert meta["tokenizer_hash"] == tok.hash and meta["block_size"] is None
    assert Tokenizer.from_file(out / "tokenizer.json").hash == tok.hash

    train = split_documents(read_split(out, "train", meta), tok, add_bos)
    val = split_documents(read_split(out, "val", meta), tok, add_bos)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(documents)
    # The fraction is of lines; the one empty line may have been drawn for val.
    assert len(val) in (round(0.1 * (len(documents) + 1)), round(0.1 * (len(documents) + 1)) - 1)
    for split, docs in (("train", train), ("val", val)):
        assert meta["splits"][split]["documents"] == len(docs)
        assert meta["splits"][split]["tokens"] == (out / f"{split}.tokens").stat().st_size // 2
    assert summary["records_in"] == len(documents) + 1
    assert summary["records_written"] == len(documents)
    assert summary["skipped"] == {"empty line": 1}
    assert summary["unknown_tokens"] == 0

    # The loader serves this directory.
    x, y, mask = BlockLoader(out, "val", 16, 2).next_batch()
    assert x.shape == (2, 16) and float(mask.sum()) == 32


def test_pretrain_split_is_seeded(tmp_path, tok, documents):
    src = tmp_path / "c.txt"
    src.write_text("\n".join(documents) + "\n", encoding="utf-8")
    vals = []
    for seed in (1, 1, 2):
        prepare_pretrain(src, tmp_path / "d", tok, val_fraction=0.2, seed=seed, progress=False)
        vals.append((tmp_path / "d" / "val.tokens").read_bytes())
    assert vals[0] == vals[1] != vals[2]


def test_pretrain_counts_unknown_tokens(tmp_path, tok):
    src = tmp_path / "c.txt"
    src.write_text("radio \U0001f600\n", encoding="utf-8")  # an emoji is outside the vocabulary
    summary = prepare_pretrain(src, tmp_path / "d", tok, val_fraction=0.0, progress=False)
    assert summary["unknown_tokens"] == 1 and summary["unknown_rate"] > 0


def test_pretrain_bad_utf8_is_skipped_with_position_or_fatal(tmp_path, tok, capsys):
    src = tmp_path / "c.txt"
    src.write_bytes(b"good line one\nbad \xff line\ngood line two\n")
    summary = prepare_pretrain(src, tmp_path / "d", tok, val_fraction=0.0, progress=False)
    assert summary["skipped"] == {"invalid UTF-8": 1} and summary["records_written"] == 2
    assert f"{src}:2 (byte 18)" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"c\.txt:2 \(byte 18\): invalid UTF-8"):
        prepare_pretrain(src, tmp_path / "e", tok, val_fraction=0.0, strict=True, progress=False)
    assert not (tmp_path / "e").exists()


def test_empty_corpus_is_an_error_and_leaves_nothing(tmp_path, tok):
    src = tmp_path / "empty.txt"
    src.write_text("\n\n")
    with pytest.raises(DataError, match="empty corpus"):
        prepare_pretrain(src, tmp_path / "d", tok, progress=False)
    with pytest.raises(DataError, match="empty corpus"):
        prepare_sft(src, tmp_path / "d", tok, 32, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]


def test_output_directory_that_is_not_a_dataset_is_refused(tmp_path, tok):
    src = tmp_path / "c.txt"
    src.write_text("radio\n")
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        prepare_pretrain(src, precious, tok, progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"


SFT_RECORDS = [
    {"question": "what is the antenna", "answer": "the antenna is connected to the radio"},
    {"question": "业余无线电是什么？", "answer": "业余无线电是一种爱好。"},
    {"question": "hello", "answer": ""},
    {"question": "how long is the wire", "answer": "about ten meters of wire"},
]


def expected_sample(tok, record):
    """Reference: template ids and target mask, built here from separately encoded parts."""
    q, a = tok.encode(record["question"]), tok.encode(record["answer"])
    ids = [INST, *q, RESP, *a, EOS]
    mask = [0] * (len(q) + 2) + [1] * (len(a) + 1)
    return ids, mask


def write_jsonl(path, records, extra_lines=()):
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_sft_template_and_mask_token_by_token(tmp_path, tok):
    q = tok.encode(SFT_RECORDS[0]["question"])
    assert any(len(tok.id_to_token(i)) > 1 for i in q), "English words are multi-character tokens"
    src = tmp_path / "sft.jsonl"
    write_jsonl(src, SFT_RECORDS)
    out = tmp_path / "ds"
    block = 40
    summary = prepare_sft(src, out, tok, block, val_fraction=0.0, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "sft" and meta["block_size"] == block
    assert meta["splits"]["train"]["samples"] == 4 and meta["splits"]["val"]["samples"] == 0
    tokens = np.fromfile(out / "train.tokens", dtype=np.uint16).reshape(-1, block + 1)
    mask = np.fromfile(out / "train.mask", dtype=np.uint8).reshape(-1, block + 1)
    for row, row_mask, record in zip(tokens, mask, SFT_RECORDS, strict=True):
        ids, want = expected_sample(tok, record)
        pad = block + 1 - len(ids)
        assert row.tolist() == ids + [PAD] * pad
        assert row_mask.tolist() == want + [0] * pad
        # Read back: the marked targets decode to the answer followed by <|eos|>.
        assert tok.decode(row[row_mask == 1]) == record["answer"] + "<|eos|>"
    assert summary["records_written"] == 4 and summary["skipped"] == {}

    x, y, m = BlockLoader(out, "train", block, 4, shuffle="epoch").next_batch()
    for xi, yi, mi in zip(x, y, m, strict=True):
        k = [r.tolist() for r in tokens].index(xi.tolist() + [yi[-1].item()])
        assert mi.tolist() == mask[k, 1:].astype(float).tolist()


def test_sft_packing_keeps_samples_whole_and_in_order(tmp_path, tok):
    src = tmp_path / "sft.jsonl"
    write_jsonl(src, SFT_RECORDS * 3)
    out = tmp_path / "ds"
    block = 48
    summary = prepare_sft(src, out, tok, block, val_fraction=0.0, pack=True, progress=False)
    tokens = np.fromfile(out / "train.tokens", dtype=np.uint16).reshape(-1, block + 1)
    mask = np.fromfile(out / "train.mask", dtype=np.uint8).reshape(-1, block + 1)
    assert summary["splits"]["train"]["samples"] == len(tokens) < 12  # several samples per row
    want_ids, want_mask = [], []
    for record in SFT_RECORDS * 3:
        ids, m = expected_sample(tok, record)
        want_ids += ids
        want_mask += m
    got_ids, got_mask = [], []
    for row, row_mask in zip(tokens, mask, strict=True):
        n = len(row)
        while n and row[n - 1] == PAD:
            n -= 1
        assert row[n - 1] == EOS and not row_mask[n:].any()
        got_ids += row[:n].tolist()
        got_mask += row_mask[:n].tolist()
    assert got_ids == want_ids and got_mask == want_mask


def test_sft_overlong_truncated_or_dropped_and_counted(tmp_path, tok):
    long_record = {"question": "what is the antenna", "answer": " ".join(["radio"] * 50)}
    src = tmp_path / "sft.jsonl"
    write_jsonl(src, [SFT_RECORDS[0], long_record, {"question": "radio " * 40, "answer": "yes"}])
    block = 40  # the first record fits (35 tokens)
    s = prepare_sft(src, tmp_path / "t", tok, block, val_fraction=0.0, progress=False)
    assert s["truncated"] == 1 and s["skipped"] == {"overlong (no answer token fits)": 1}
    rows = np.fromfile(tmp_path / "t" / "train.tokens", dtype=np.uint16).reshape(-1, block + 1)
    ids, _ = expected_sample(tok, long_record)
    assert rows[1].tolist() == ids[: block + 1]
    s = prepare_sft(src, tmp_path / "d", tok, block, val_fraction=0.0, overlong="drop", progress=False)
    assert s["records_written"] == 1 and s["skipped"] == {"overlong (dropped)": 2}


def test_sft_bad_records_skipped_with_file_and_line_or_fatal(tmp_path, tok, capsys):
    src = tmp_path / "bad.jsonl"
    good = json.dumps(SFT_RECORDS[0])
    src.write_bytes(
        "\n".join(
            [good, '{"question": "x"', '{"question": "x"}', '{"question": 1, "answer": "y"}', "[1]", good]
        ).encode()
        + b'\n{"question": "\xff", "answer": "z"}\n'
    )
    s = prepare_sft(src, tmp_path / "d", tok, 64, val_fraction=0.0, progress=False)
    assert s["records_in"] == 7 and s["records_written"] == 2
    assert s["skipped"] == {
        "malformed JSON": 1,
        "missing key": 1,
        "value is not a string": 1,
        "not a JSON object": 1,
        "invalid UTF-8": 1,
    }
    err = capsys.readouterr().err
    for line, reason in ((2, "malformed JSON"), (3, "missing key: 'answer'"), (7, "invalid UTF-8")):
        assert f"bad.jsonl:{line} " in err and reason in err
    with pytest.raises(DataError, match=r"bad\.jsonl:2 \(byte \d+\): malformed JSON"):
        prepare_sft(src, tmp_path / "s", tok, 64, strict=True, progress=False)
    assert not (tmp_path / "s").exists()


def test_sft_split_is_disjoint(tmp_path, tok, shared_data):
    lines = (shared_data / "sft_amateur_radio.jsonl").read_text(encoding="utf-8").splitlines()
    unique = list(dict.fromkeys(lines))[:300]
    src = tmp_path / "u.jsonl"
    src.write_text("\n".join(unique) + "\n", encoding="utf-8")
    out = tmp_path / "ds"
    s = prepare_sft(src, out, tok, 256, val_fraction=0.2, seed=3, overlong="drop", progress=False)
    assert s["records_written"] == 300 - s["skipped"].get("overlong (dropped)", 0) > 250
    rows = {}
    for split in ("train", "val"):
        t = np.fromfile(out / f"{split}.tokens", dtype=np.uint16).reshape(-1, 257)
        rows[split] = {r.tobytes() for r in t}
        assert len(rows[split]) == len(t) == s["splits"][split]["samples"]
    assert 50 <= s["splits"]["val"]["examples"] <= 60
    assert not rows["train"] & rows["val"]


def test_cli_pretrain_and_sft(tmp_path, shared_data):
    vocab = str(shared_data / "tokenizer_16384.json")
    src = tmp_path / "c.txt"
    src.write_text("the radio\nthe antenna\n")
    cmd = [sys.executable, "-m", "nano.data", "pretrain", str(src), "-o", str(tmp_path / "p")]
    res = subprocess.run(
        [*cmd, "--tokenizer", vocab, "--val-fraction", "0.5"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["records_written"] == 2 and "MB/s" in res.stderr
    sft = tmp_path / "s.jsonl"
    write_jsonl(sft, SFT_RECORDS)
    cmd = [
        sys.executable,
        "-m",
        "nano.data",
        "sft",
        str(sft),
        "-o",
        str(tmp_path / "s"),
        "--tokenizer",
        vocab,
    ]
    res = subprocess.run([*cmd, "--block-size", "64", "--pack"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["pack"] is True
    res = subprocess.run([*cmd, "--block-size", "1"], capture_output=True, text=True)
    assert res.returncode == 2 and "block_size" in res.stderr
