"""The Python API of nano.Tokenizer: loading, saving, encoding variants, pickling, threads."""

import json
import os
import pickle
import signal
import threading
import time

import nano
import numpy as np
import pytest
from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer


@pytest.fixture(scope="module")
def ref_path(shared_data):
    return shared_data / "tokenizer_16384.json"


@pytest.fixture(scope="module")
def tok(ref_path):
    return Tokenizer.from_file(ref_path)


@pytest.fixture(scope="module")
def small():
    tokens = [*DEFAULT_SPECIAL_TOKENS, "a", "b", "ab", "abc", "中", "文", "中文", "<", "|", "e", "o", "s", ">"]
    return Tokenizer.from_tokens(tokens, [i < 7 for i in range(len(tokens))])


def test_public_name_and_reference_vocabulary(tok, ref_path):
    assert nano.Tokenizer is Tokenizer
    assert tok.vocab_size == len(tok) == 16384
    assert tok.special_tokens == {s: i for i, s in enumerate(DEFAULT_SPECIAL_TOKENS)}
    config = json.loads(ref_path.read_text(encoding="utf-8"))
    for i in (0, 7, 500, 16383):
        assert tok.id_to_token(i) == config["itos"][i]
        assert tok.token_to_id(config["itos"][i]) == i
    assert tok.token_to_id("definitely not a token") is None
    assert tok.unknown_id == 1


def test_save_is_byte_stable(tok, ref_path, tmp_path):
    out = tmp_path / "copy.json"
    tok.save(out)
    assert out.read_bytes() == ref_path.read_bytes()
    assert tok.to_json().encode() == ref_path.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name != "copy.json"], "temp file left behind"


def test_hash_is_fnv1a_over_tokens_and_flags(tok):
    h = 0xCBF29CE484222325
    for i in range(tok.vocab_size):
        for b in tok.id_to_token(i).encode() + bytes([1 if tok.is_special(i) else 0]):
            h = ((h ^ b) * 0x100000001B3) % 2**64
    assert tok.hash == f"{h:016x}"


def test_special_tokens_need_opt_in(small):
    assert small.encode("ab<|eos|>", allow_special=True) == [9, 3]
    plain = small.encode("<|eos|>")
    assert 3 not in plain and small.decode(plain) == "<|eos|>"


def test_encode_variants_agree(tok, shared_data):
    text = (shared_data / "pretrain_psycho.txt").read_text(encoding="utf-8")[:300_000]
    texts = text.split("\n")
    one = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, threads=2) == one
    assert tok.encode_batch(texts, threads=1) == one
    assert tok.encode(text, threads=2) == tok.encode(text)
    arr = tok.encode_to_numpy(texts, threads=2, separator_id=3)
    assert arr.dtype == np.uint16 and arr.ndim == 1
    assert arr.tolist() == [i for ids in one for i in (*ids, 3)]
    wide = tok.encode_to_numpy(texts, dtype="uint32")
    assert wide.dtype == np.uint32 and wide.tolist() == [i for ids in one for i in ids]
    assert tok.encode_to_numpy([]).size == 0
    # a long text is cut into pieces encoded in parallel; empty texts still get their separator
    mixed = [text, "", texts[0], text[:1000], ""]
    expected = [i for t in mixed for i in (*tok.encode(t), 3)]
    assert tok.encode_to_numpy(mixed, threads=2, separator_id=3).tolist() == expected
    flat = [i for t in mixed for i in tok.encode(t)]
    assert tok.encode_to_numpy(mixed, threads=3, dtype="uint32").tolist() == flat


def test_decode_accepts_arrays_and_streams(small):
    ids = small.encode("abc中文ab<|eos|>", allow_special=True)
    assert small.decode(np.array(ids, dtype=np.uint16)) == "abc中文ab<|eos|>"
    d = small.stream_decoder(skip_special=True)
    assert [d.push(i) for i in ids] == ["abc", "中文", "ab", ""]
    assert d.text == "abc中文ab"


def test_pickle_and_threads(small):
    clone = pickle.loads(pickle.dumps(small))
    assert clone == small and clone.hash == small.hash
    text = "abcab中文x" * 1000
    expect = small.encode(text)
    results = [None] * 8

    def work(k):
        results[k] = small.encode(text)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expect for r in results)


def test_unknown_characters(tok):
    ids = tok.encode("\U0001F600a")
    assert ids[0] == tok.unknown_id and tok.decode(ids[1:]) == "a"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_parallel_encoding_works_in_a_forked_child(small):
    # Worker pools of the parent have no threads in a forked child (DataLoader workers); the
    # child must build its own instead of waiting forever on them.
    texts = ["abcab中文" * 40_000, "ab"] * 2
    expect = small.encode_batch(texts, threads=2)
    pid = os.fork()
    if pid == 0:  # child: exit code says whether it got the same ids
        ok = small.encode_batch(texts, threads=2) == expect and small.encode_batch(texts) == expect
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("encoding in a forked child hung")
