"""Differential tests: the Rust tokenizer against the clean-room pure-Python reference
(tests/mfm_reference.py) on every shared corpus and on generated text."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mfm_reference import ReferenceMFM
from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer, read_corpus

CORPORA = [
    "pretrain_psycho.txt",
    "pretrain_amateur_radio.txt",
    "pretrain_chinese_classic.txt",
    "sft_amateur_radio.jsonl",
    "sft_self_id.jsonl",
]


@pytest.fixture(scope="module")
def pair(shared_data):
    path = shared_data / "tokenizer_16384.json"
    return Tokenizer.from_file(path), ReferenceMFM.from_json_file(path)


def corpus_chunk(shared_data, name, limit=100_000):
    text = read_corpus(shared_data / name) if name.endswith(".txt") else (shared_data / name).read_text("utf-8")
    return text[:limit]


@pytest.mark.parametrize("name", CORPORA)
def test_shared_corpora_match_reference(pair, shared_data, name):
    tok, ref = pair
    text = corpus_chunk(shared_data, name)
    for allow in (False, True):
        assert tok.encode(text, allow_special=allow) == ref.encode(text, allow_special=allow)
    assert tok.encode(text, threads=2) == tok.encode(text)


def test_whole_corpora_with_threads_match_sequential(pair, shared_data):
    tok, _ = pair
    texts = [(shared_data / name).read_text("utf-8") for name in CORPORA]
    assert tok.encode_batch(texts, threads=2) == tok.encode_batch(texts, threads=1)


# Text mixing what the vocabulary knows (CJK, ASCII words) with what it does not (emoji, rare
# hanzi, astral characters) and special-token strings, whole or broken.
SPECIAL_BITS = list(DEFAULT_SPECIAL_TOKENS) + ["<|", "|>", "<|eos", "eos|>", "<||>"]
pieces = st.one_of(
    st.sampled_from(SPECIAL_BITS),
    st.sampled_from(["the ", "English", "and", "中文", "的", "学习", "。", "，", "\n", " ", "CD-ROM", "B.C."]),
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=4),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6),
    st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=2),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=4),
)
mixed_text = st.lists(pieces, max_size=30).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mixed_text, allow=st.booleans())
def test_generated_text_matches_reference(pair, text, allow):
    tok, ref = pair
    ids = tok.encode(text, allow_special=allow)
    assert ids == ref.encode(text, allow_special=allow)
    if not allow:
        assert not any(tok.is_special(i) and i != tok.unknown_id for i in ids)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mixed_text)
def test_round_trip_when_every_character_is_known(pair, text):
    tok, _ = pair
    if all(tok.token_to_id(c) is not None for c in text):
        assert tok.decode(tok.encode(text)) == text
        assert tok.decode(tok.encode(text, allow_special=True)) == text


# Small random vocabularies with overlapping multi-character entries stress the longest-match
# rule and the safe-cut search far more than the reference vocabulary does.
@st.composite
def vocab_and_text(draw):
    alphabet = "".join(draw(st.lists(st.sampled_from("ab中文😀<|>e"), min_size=2, max_size=6, unique=True)))
    words = draw(st.lists(st.text(alphabet=alphabet, min_size=1, max_size=5), max_size=25, unique=True))
    extra = draw(st.lists(st.sampled_from(words), max_size=2, unique=True)) if words else []
    specials = ["<|unknown|>", "<|e|>", *(w for w in extra if w not in ("<|unknown|>", "<|e|>"))]
    plain = [w for w in words if w not in specials]
    text = draw(st.text(alphabet=alphabet + "x", max_size=200))
    return specials, plain, text


@settings(max_examples=300, deadline=None)
@given(case=vocab_and_text(), allow=st.booleans())
def test_random_vocabularies_match_reference(case, allow):
    specials, plain, text = case
    tokens = specials + plain
    tok = Tokenizer.from_tokens(tokens, [i < len(specials) for i in range(len(tokens))])
    ref = ReferenceMFM(tokens, set(specials))
    expect = ref.encode(text, allow_special=allow)
    assert tok.encode(text, allow_special=allow) == expect
    long_text = text * 2000
    assert tok.encode(long_text, allow_special=allow, threads=3) == tok.encode(long_text, allow_special=allow)
    back = Tokenizer.from_json(tok.to_json())
    assert back.hash == tok.hash and json.loads(back.to_json())["itos"] == tokens
