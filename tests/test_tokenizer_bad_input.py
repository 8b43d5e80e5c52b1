"""Bad input gives a clear Python exception, never a crash."""

import json

import pytest
from nano.tokenizer import Tokenizer, read_corpus

GOOD = {"vocab_size": 2, "stoi": {"<|unknown|>": 0, "a": 1}, "itos": ["<|unknown|>", "a"],
        "special_tokens": {"<|unknown|>": 0}}


def variant(**changes):
    config = json.loads(json.dumps(GOOD))
    config.update(changes)
    return json.dumps(config)


def test_good_config_loads():
    assert Tokenizer.from_json(json.dumps(GOOD)).vocab_size == 2


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "EOF"),
        ("{not json", "key must be a string"),
        ("[]", "JSON object"),
        (variant(vocab_size=3), "vocab_size"),
        (variant(itos=["<|unknown|>", "b"]), "itos[1]"),
        (variant(stoi={"<|unknown|>": 0, "a": 5}), "outside"),
        (variant(stoi={"<|unknown|>": 0}), "stoi has 1"),
        (variant(itos=["<|unknown|>", "<|unknown|>"], stoi={"<|unknown|>": 0, "x": 1}), "itos[1]"),
        (variant(special_tokens={"a": 0}), "special token"),
        (variant(stoi={"<|unknown|>": 0, "a": -1}), "invalid value"),
        (variant(stoi={"<|unknown|>": 0, "a": "1"}), "invalid type"),
        (variant(extra=1), "unknown field"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "itos"}), "missing field"),
        (json.dumps({"vocab_size": 1, "stoi": {"a": 0}, "itos": ["a"], "special_tokens": {}}), "<|unknown|>"),
        (json.dumps({"vocab_size": 2, "stoi": {"<|unknown|>": 0, "": 1}, "itos": ["<|unknown|>", ""],
                     "special_tokens": {}}), "empty"),
    ],
)
def test_malformed_vocabulary_is_a_value_error(text, reason):
    with pytest.raises(ValueError, match="vocabulary") as err:
        Tokenizer.from_json(text)
    assert reason in str(err.value)


def test_duplicate_tokens_rejected():
    with pytest.raises(ValueError, match="twice"):
        Tokenizer.from_tokens(["<|unknown|>", "a", "a"], [True, False, False])


def test_file_errors(tmp_path):
    with pytest.raises(OSError):
        Tokenizer.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"vocab_size": 1, \xff}')
    with pytest.raises(ValueError, match="byte offset 18"):
        Tokenizer.from_file(bad)
    corpus = tmp_path / "c.txt"
    corpus.write_bytes("中文".encode() + b"\xfe")
    with pytest.raises(ValueError, match="byte offset 6"):
        read_corpus(corpus)
    with pytest.raises(ValueError, match="byte offset 6"):
        Tokenizer.build([corpus], 200)
    with pytest.raises(OSError):
        Tokenizer.from_json(json.dumps(GOOD)).save(tmp_path / "no" / "dir.json")


def test_decode_out_of_range_and_bad_arguments():
    tok = Tokenizer.from_json(json.dumps(GOOD))
    for ids in ([2], [-1], [0, 1, 7]):
        with pytest.raises(ValueError, match="out of range"):
            tok.decode(ids)
    with pytest.raises(ValueError, match="out of range"):
        tok.id_to_token(2)
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(TypeError):
        tok.encode_batch(["a", 3])
    with pytest.raises(ValueError, match="threads"):
        tok.encode_batch(["a"], threads=0)
    with pytest.raises(ValueError, match="dtype"):
        tok.encode_to_numpy(["a"], dtype="float32")
    with pytest.raises(ValueError, match="out of range"):
        tok.encode_to_numpy(["a"], separator_id=99)


def test_empty_input(tmp_path):
    tok = Tokenizer.from_json(json.dumps(GOOD))
    assert tok.encode("") == [] and tok.decode([]) == ""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        Tokenizer.build([empty], 200)
    with pytest.raises(ValueError, match="empty"):
        Tokenizer.build([], 200)
