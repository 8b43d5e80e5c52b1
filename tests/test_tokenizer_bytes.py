"""Byte fallback: with the 256 byte tokens a vocabulary loses no text (encode → decode is the identity on
any Unicode string, streamed or not), and characters outside it are spelled as their UTF-8 bytes."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

BYTES = [f"<0x{b:02X}>" for b in range(256)]
WORDS = ["a", "b", "ab", "abc", "中", "文", "中文", "😀", "\n", " ", "<", "0", "x", "4", "1", ">"]


def reference_encode(words: list[str], byte_id: dict[int, int], text: str) -> list[int]:
    """The rule spelled out naively: longest entry of `words` at each character, else the character's
    UTF-8 bytes."""
    ids = {w: i for i, w in enumerate(words)}
    out, i = [], 0
    while i < len(text):
        for n in range(len(text) - i, 0, -1):
            if text[i:i + n] in ids:
                out.append(ids[text[i:i + n]])
                i += n
                break
        else:
            out.extend(byte_id[b] for b in text[i].encode("utf-8"))
            i += 1
    return out


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    tokens = list(DEFAULT_SPECIAL_TOKENS) + BYTES + WORDS
    return Tokenizer.from_tokens(tokens, [t in DEFAULT_SPECIAL_TOKENS for t in tokens])


def ids_of(tok):
    words = [tok.id_to_token(i) if tok.byte_value(i) is None and not tok.is_special(i) else None
             for i in range(tok.vocab_size)]
    byte_id = {tok.byte_value(i): i for i in range(tok.vocab_size) if tok.byte_value(i) is not None}
    return words, byte_id


TEXTS = st.lists(st.sampled_from(WORDS + ["债", "é", "\0", "<0x41>", "\U0010FFFF"])
                 | st.characters(exclude_categories=["Cs"]), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_round_trip_and_reference(tok, text):
    ids = tok.encode(text)
    assert tok.unknown_id not in ids
    assert tok.decode(ids) == text
    words, byte_id = ids_of(tok)
    assert ids == reference_encode(words, byte_id, text)
    d = tok.stream_decoder()
    pieces = [d.push(i) for i in ids] + [d.finish()]
    assert "".join(pieces) == text == d.text
    # Every piece is whole characters (a split character comes out with its last byte).
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in text


def test_spelling_and_streaming(tok):
    e5, x80, xba = (tok.token_to_id(f"<0x{b:02X}>") for b in (0xE5, 0x80, 0xBA))
    ids = tok.encode("ab债")
    assert ids == [tok.token_to_id("ab"), e5, x80, xba]
    d = tok.stream_decoder()
    assert [d.push(i) for i in ids] == ["ab", "", "", "债"]
    # A byte token typed as text is its six characters.
    assert tok.encode("<0x41>") == [tok.token_to_id(c) for c in "<0x41>"]
    assert tok.has_byte_fallback and tok.byte_value(e5) == 0xE5 and tok.byte_value(tok.token_to_id("a")) is None


def test_invalid_byte_sequences_become_replacement_characters(tok):
    b = {x: tok.token_to_id(f"<0x{x:02X}>") for x in (0xE5, 0x80, 0xF0, 0x9F)}
    a = tok.token_to_id("a")
    ids = [b[0xE5], b[0x80], a, b[0x80], a, b[0xF0], b[0x9F]]
    assert tok.decode(ids) == "\ufffda\ufffda\ufffd"
    d = tok.stream_decoder()
    assert [d.push(i) for i in ids] + [d.finish()] == ["", "", "\ufffda", "\ufffd", "a", "", "", "\ufffd"]


def test_partial_byte_sets_are_refused():
    tokens = list(DEFAULT_SPECIAL_TOKENS) + BYTES[:-1] + ["a"]
    with pytest.raises(ValueError, match=r"255 of the 256 byte tokens.*<0xFF>"):
        Tokenizer.from_tokens(tokens, [t in DEFAULT_SPECIAL_TOKENS for t in tokens])


def test_builder_reserves_byte_tokens_and_loses_nothing():
    corpus = "我们的世界我们的天空\n我们的世界\n你好世界\n" * 30
    tok = Tokenizer.build_from_texts([corpus], 300 + 256, byte_fallback=True, threads=1)
    assert tok.tokens()[7:263] == BYTES
    assert not any("<0x" in t for t in tok.tokens()[263:])
    unseen = "债券贷款 — ünïcödé 😀"
    assert tok.decode(tok.encode(unseen)) == unseen
    stats = tok.stats(unseen)
    assert stats["unknown_tokens"] == 0 and stats["byte_tokens"] > 0
    plain = Tokenizer.build_from_texts([corpus], 300, threads=1)
    assert not plain.has_byte_fallback and plain.unknown_id in plain.encode(unseen)
    with pytest.raises(ValueError, match="256 byte tokens"):
        Tokenizer.build_from_texts([corpus], 300, byte_fallback=True, threads=1)


def test_cli_build_flag(tmp_path, capsys):
    from nano.tokenizer import main

    (tmp_path / "c.txt").write_text("你好世界\n" * 20, encoding="utf-8")
    assert main(["build", str(tmp_path / "c.txt"), "--vocab-size", "400", "--byte-fallback",
                 "--out", str(tmp_path / "v.json")]) == 0
    assert Tokenizer.from_file(tmp_path / "v.json").has_byte_fallback
