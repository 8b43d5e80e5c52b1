"""The vocabulary builder and the command line."""

import json
import subprocess
import sys

import pytest
from mfm_reference import ReferenceMFM
from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer, main, read_corpus


@pytest.fixture(scope="module")
def classic(shared_data):
    return shared_data / "pretrain_chinese_classic.txt"


@pytest.fixture(scope="module")
def built(classic):
    return Tokenizer.build([classic], 3000, threads=2)


def test_build_layout_and_report(built, classic):
    text = read_corpus(classic)
    assert built.vocab_size <= 3000
    assert built.tokens()[: len(DEFAULT_SPECIAL_TOKENS)] == list(DEFAULT_SPECIAL_TOKENS)
    assert built.special_tokens == {s: i for i, s in enumerate(DEFAULT_SPECIAL_TOKENS)}
    rest = built.tokens()[len(DEFAULT_SPECIAL_TOKENS):]
    assert rest == sorted(rest)
    r = built.build_report
    assert r["distinct_chars"] == len(set(text.replace("\n", "")))
    assert r["char_coverage"] == pytest.approx(1.0)
    assert r["multi_char_tokens"] == sum(len(t) > 1 for t in rest) > 0
    # Every character of the corpus has its own token, so nothing is unknown and it round-trips.
    ids = built.encode(text)
    assert built.unknown_id not in ids and built.decode(ids) == text
    assert len(ids) / len(text) == pytest.approx(r["tokens_per_char"], rel=1e-9)
    assert len(ids) < 0.8 * len(text)


def test_build_is_deterministic_and_matches_reference(built, classic):
    again = Tokenizer.build([classic], 3000, threads=1)
    assert again.to_json() == built.to_json()
    text = read_corpus(classic)[:5000]
    ref = ReferenceMFM(built.tokens(), set(DEFAULT_SPECIAL_TOKENS))
    assert built.encode(text) == ref.encode(text)


def test_min_char_count_and_jsonl(tmp_path):
    corpus = tmp_path / "c.jsonl"
    records = [{"question": "你好吗", "answer": "我很好"}] * 5 + [{"question": "罕", "answer": 1}]
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    tok = Tokenizer.build(corpus, 300, min_char_count=2)
    assert tok.token_to_id("罕") is None and tok.token_to_id("你") is not None
    assert tok.build_report["char_coverage"] < 1.0
    assert len(tok.encode("你好吗")) == 1


def test_cli_build_encode_stats(tmp_path, classic, capsys):
    out = tmp_path / "v.json"
    assert main(["build", str(classic), "--vocab-size", "2000", "--out", str(out), "--threads", "1"]) == 0
    tok = Tokenizer.from_file(out)
    assert tok.vocab_size <= 2000
    assert "coverage" in capsys.readouterr().out
    assert main(["encode", "--vocab", str(out), "--text", "<|eos|>天地", "--allow-special"]) == 0
    printed = capsys.readouterr().out.split()
    assert [int(x) for x in printed] == tok.encode("<|eos|>天地", allow_special=True)
    npy = tmp_path / "ids.npy"
    assert main(["encode", "--vocab", str(out), str(classic), "--npy", str(npy), "--separator-id", "3"]) == 0
    import numpy as np

    arr = np.load(npy)
    assert arr.tolist() == tok.encode(read_corpus(classic)) + [3]
    capsys.readouterr()
    assert main(["stats", "--vocab", str(out), str(classic)]) == 0
    line = capsys.readouterr().out
    s = tok.stats(read_corpus(classic))
    assert f"{s['tokens_per_char']:.4f} tokens/char" in line
    assert f"unknown rate {s['unknown_rate']:.6f}" in line and f"coverage {s['coverage']:.6f}" in line
    assert s["coverage"] == pytest.approx(1 - s["unknown_tokens"] / s["chars"]) and s["unknown_tokens"] > 0


def test_cli_errors_and_help(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff")
    assert main(["build", str(bad), "--out", str(tmp_path / "v.json")]) == 1
    assert "byte offset 2" in capsys.readouterr().err
    assert not (tmp_path / "v.json").exists()
    for cmd in ("build", "encode", "stats"):
        done = subprocess.run([sys.executable, "-m", "nano.tokenizer", cmd, "--help"],
                              capture_output=True, text=True, check=True)
        assert "usage" in done.stdout
