"""Bad records are skipped and counted in linear time; a lone surrogate is one more bad record."""

import json

import pytest
from nano.data import DataError, prepare_sft
from nano.data import records as records_module
from nano.data.__main__ import main as data_main
from nano.data.records import Problems, iter_batches
from nano.tokenizer import Tokenizer
from nano.tokenizer import main as tokenizer_main

GOOD = json.dumps({"question": "the fox", "answer": "the dog"})
LONE = '{"question": "a\\ud800", "answer": "b"}'  # valid JSON, but the string is half a UTF-16 pair


@pytest.fixture
def vocab(tmp_path):
    path = tmp_path / "vocab.json"
    Tokenizer.build_from_texts(["the quick brown fox jumps over the lazy dog"], 110).save(path)
    return path


def test_where_gives_each_lines_file_line_and_byte(tmp_path):
    lines = [b"abc", b"\xff bad", b"", "中文".encode(), b"x\xfe", b"last"]
    path = tmp_path / "in.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    (_, batch), = list(iter_batches([path]))
    expected, offset = [], 0
    for i, line in enumerate(lines):
        expected.append((str(path), i + 1, offset))
        offset += len(line) + 1
    assert [batch.where(i) for i in range(len(lines))] == expected
    assert sorted(batch.bad) == [1, 4]


@pytest.mark.parametrize("n_bad", [2_000, 32_000])
def test_skipping_bad_lines_scans_each_batch_once(tmp_path, vocab, monkeypatch, n_bad):
    """Finding file/line/byte for any number of skipped lines indexes the batch's lines once: the work is
    one pass over the batch whether 2k or 32k lines are bad (it used to be one pass per bad line)."""
    calls = []
    real = records_module.line_starts
    monkeypatch.setattr(records_module, "line_starts", lambda data: calls.append(len(data)) or real(data))
    src = tmp_path / "qa.jsonl"
    src.write_text("\n".join(["{not json"] * n_bad + [GOOD] * 3) + "\n")
    summary = prepare_sft(src, tmp_path / "out", vocab, 16, val_fraction=0.0, progress=False)
    assert summary["skipped"] == {"malformed JSON": n_bad} and summary["records_written"] == 3
    assert calls == [src.stat().st_size]  # one batch, indexed once


def test_lone_surrogate_is_skipped_and_counted(tmp_path, vocab, capsys):
    src = tmp_path / "qa.jsonl"
    src.write_text("\n".join([GOOD, LONE, GOOD, '{"question": "q", "answer": "\\udfff x"}']) + "\n")
    assert data_main(["sft", str(src), "-o", str(tmp_path / "out"), "--tokenizer", str(vocab),
                      "--block-size", "16", "--val-fraction", "0", "--no-progress"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["skipped"] == {"lone surrogate": 2} and summary["records_written"] == 2
    assert f"{src}:2 " in captured.err and f"{src}:4 " in captured.err


def test_lone_surrogate_with_strict_names_file_and_line(tmp_path, vocab):
    src = tmp_path / "qa.jsonl"
    src.write_text("\n".join([GOOD, GOOD, LONE]) + "\n")
    with pytest.raises(DataError, match=f"{src}:3 .*lone surrogate"):
        prepare_sft(src, tmp_path / "out", vocab, 16, val_fraction=0.0, strict=True, progress=False)
    assert not (tmp_path / "out").exists()


def test_an_escaped_surrogate_pair_is_text(tmp_path, vocab):
    src = tmp_path / "qa.jsonl"
    src.write_text(json.dumps({"question": "\U0001f600", "answer": "ok"}, ensure_ascii=True) + "\n")
    summary = prepare_sft(src, tmp_path / "out", vocab, 16, val_fraction=0.0, progress=False)
    assert summary["records_written"] == 1 and summary["skipped"] == {}


def test_tokenizer_build_skips_lone_surrogates_naming_file_and_line(tmp_path, capsys):
    src = tmp_path / "corpus.jsonl"
    src.write_text("\n".join([GOOD, LONE, GOOD]) + "\n")
    out = tmp_path / "v.json"
    assert tokenizer_main(["build", str(src), "--vocab-size", "110", "--out", str(out)]) == 0
    assert f"{src}:2" in capsys.readouterr().err
    assert Tokenizer.from_file(out).vocab_size == 110


def test_problems_counts_without_strict_and_raises_with_it():
    p = Problems()
    p.skip("f", 3, 10, "malformed JSON")
    assert p.total == 1
    with pytest.raises(DataError, match="f:3 .byte 10.: malformed JSON"):
        Problems(strict=True).skip("f", 3, 10, "malformed JSON")
