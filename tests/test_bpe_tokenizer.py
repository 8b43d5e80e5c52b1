"""BPE tokenizers (byte-level: GPT-2, Llama 3, Qwen2; SentencePiece-style with byte fallback)
against HF ``tokenizers`` on the same ``tokenizer.json``: identical ids on mixed text, decoding,
special-token handling, GGUF metadata, and refusals of what is not supported.

The vocabularies are trained here with HF's trainer in each family's configuration
(tests/bpe_fixtures.py). The mixed-text size is ``NANO_BPE_TEST_BYTES`` (default 1 MB per
family, to keep the file near a minute); benches/bench_bpe.py compares 10 MB per family.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bpe_fixtures import FAMILIES, PLAIN_ADDED, SPECIALS, build_fixture, mixed_documents  # noqa: E402
from nano.tokenizer import BpeTokenizer  # noqa: E402

TEST_BYTES = int(os.environ.get("NANO_BPE_TEST_BYTES", 1_000_000))
#: Every code point through the patterns with NANO_BPE_TEST_FULL=1 (slow: HF's pre_tokenize_str
#: builds a Python tuple per piece); every 7th by default.
SWEEP_STEP = 1 if os.environ.get("NANO_BPE_TEST_FULL") else 7


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bpe")
    return {f: build_fixture(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return mixed_documents(TEST_BYTES, seed=7)


def hf_tokenizer(folder: Path, allow_special: bool = True):
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    # HF matches special tokens unless told to encode them as text.
    tok.encode_special_tokens = not allow_special
    return tok


def first_difference(docs, want, got) -> str:
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        if w != g:
            k = next((j for j, (a, b) in enumerate(zip(w, g, strict=False)) if a != b), min(len(w), len(g)))
            return f"doc {i} ({docs[i][:80]!r}...): first difference at id {k}: hf {w[k:k + 8]} ours {g[k:k + 8]}"
    return "lengths differ"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("allow_special", [True, False])
def test_ids_identical_to_hf_on_mixed_text(fixtures, docs, family, allow_special):
    hf = hf_tokenizer(fixtures[family], allow_special)
    ours = BpeTokenizer.from_hf(fixtures[family])
    if not allow_special:
        # Only documents with special-token text encode differently in this mode.
        docs = [d for d in docs if any(s in d for f in FAMILIES for s in SPECIALS[f])]
        assert len(docs) > 10
    want = [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]
    got = ours.encode_batch(docs, allow_special=allow_special)
    assert got == want, first_difference(docs, want, got)
    # The text really exercises the fixture: many distinct tokens, byte fallback for SentencePiece.
    distinct = {i for ids in got for i in ids}
    assert len(distinct) > ours.vocab_size // (2 if allow_special else 10)
    if family == "sentencepiece":
        assert any(ours.token_to_id(f"<0x{b:02X}>") in distinct for b in range(0x80, 0x100))


@pytest.mark.parametrize("family", FAMILIES)
def test_long_document_in_parallel_matches_hf(fixtures, docs, family):
    text = ""
    for doc in docs:
        text += doc
        if len(text.encode()) > 320 * 1024:
            break
    hf = hf_tokenizer(fixtures[family])
    ours = BpeTokenizer.from_hf(fixtures[family])
    want = hf.encode(text, add_special_tokens=False).ids
    assert ours.encode(text, allow_special=True) == want
    assert ours.encode(text, allow_special=True, threads=4) == want
    assert ours.encode_to_numpy([text, text], allow_special=True, threads=2).tolist() == want + want


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_matches_hf(fixtures, docs, family):
    hf = hf_tokenizer(fixtures[family])
    ours = BpeTokenizer.from_hf(fixtures[family])
    for doc in docs[:300]:
        ids = ours.encode(doc, allow_special=True)
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)
        assert ours.decode(ids, skip_special=True) == hf.decode(ids, skip_special_tokens=True)
    if family != "qwen2":  # NFC normalization is lossy for text that is not NFC
        # Special tokens as text: with SentencePiece, text after an added token gets its own
        # leading "▁", as in HF, so the round trip holds only without them.
        text = "".join(docs[:50])
        assert ours.decode(ours.encode(text)) == text
    # A private-use character far from the training text is spelled by its bytes' tokens; cut
    # short, its bytes are a prefix, and the text replacement characters as HF writes them (one for
    # the incomplete character after byte-level tokens, one per byte of a byte-fallback run).
    rare = "\U0010fffd"
    ids = ours.encode(rare)
    assert len(ids) > 1 and ours.decode_bytes(ids) == rare.encode()
    assert rare.encode().startswith(ours.decode_bytes(ids[:-1]).lstrip(b" "))
    cut = ours.decode(ids[:-1])
    assert cut == hf.decode(ids[:-1], skip_special_tokens=False) and set(cut.strip()) == {"\ufffd"}


def unicode_sweep(start: int, stop: int, step: int = 1) -> str:
    """Every code point of a range (surrogates excepted) in contexts that reach each rule of the
    patterns: after a letter, after a space, before a digit, doubled, after an apostrophe."""
    parts = []
    for cp in range(start, stop, step):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        parts.append(f"a{c} {c}1{c}{c}'{c}\n")
    return "".join(parts)


@pytest.mark.parametrize("family", ["gpt2", "llama3", "qwen2"])
def test_pattern_pieces_of_every_code_point(fixtures, family):
    # BMP code points (every SWEEP_STEP-th) and samples beyond, in contexts that reach each rule,
    # cut into the same pieces as HF's pre-tokenizer cuts them (HF reports character offsets).
    text = unicode_sweep(0, 0x10000, SWEEP_STEP) + unicode_sweep(0x10000, 0x110000, 17 * SWEEP_STEP)
    hf = hf_tokenizer(fixtures[family]).pre_tokenizer
    want = [offsets for _, offsets in hf.pre_tokenize_str(text)]
    pieces = BpeTokenizer.from_hf(fixtures[family]).pre_tokenize(text)
    ends = np.cumsum([len(p) for p in pieces]).tolist()
    got = list(zip([0, *ends[:-1]], ends, strict=True))
    if got != want:
        k = next(k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b)
        start = want[k][0]
        pytest.fail(f"first difference at char {start} ({text[start:start + 12]!r}): hf "
                    f"{[text[a:b] for a, b in want[k:k + 4]]} ours {pieces[k:k + 4]}")
    assert BpeTokenizer.from_hf(fixtures["sentencepiece"]).pre_tokenize("a b") is None


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_of_odd_code_points(fixtures, family):
    text = unicode_sweep(0, 0x3400) + unicode_sweep(0xA000, 0x110000, 61)
    docs = [text[i:i + 4000] for i in range(0, len(text), 4000)]
    hf = hf_tokenizer(fixtures[family])
    ours = BpeTokenizer.from_hf(fixtures[family])
    want = [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]
    got = ours.encode_batch(docs, allow_special=True)
    assert got == want, first_difference(docs, want, got)


@pytest.mark.parametrize("family", FAMILIES)
def test_special_tokens_only_when_allowed(fixtures, family):
    ours = BpeTokenizer.from_hf(fixtures[family])
    special = SPECIALS[family][-1]
    sid = ours.token_to_id(special)
    assert ours.is_special(sid) and ours.special_tokens[special] == sid
    text = f"hi{special}there"
    allowed = ours.encode(text, allow_special=True)
    assert sid in allowed
    plain = ours.encode(text)
    assert plain == hf_tokenizer(fixtures[family], False).encode(text, add_special_tokens=False).ids
    assert allowed == hf_tokenizer(fixtures[family]).encode(text, add_special_tokens=False).ids
    if family != "sentencepiece":
        # (The SentencePiece fixture learned merges that rebuild "</s>" from its characters.)
        assert sid not in plain and len(plain) > len(allowed)
    assert ours.decode(plain) == text
    hf = hf_tokenizer(fixtures[family])
    assert ours.decode(allowed) == hf.decode(allowed, skip_special_tokens=False)
    # A non-special added token is matched either way.
    if family != "sentencepiece":
        pid = ours.token_to_id(PLAIN_ADDED)
        assert pid in ours.encode(f"x{PLAIN_ADDED}y") and not ours.is_special(pid)
    assert ours.decode(allowed, skip_special=True) == "hithere" or family == "sentencepiece"


def test_config_and_kind(fixtures):
    kinds = {f: BpeTokenizer.from_hf(fixtures[f]).kind for f in FAMILIES}
    assert kinds == {"gpt2": "byte_level:gpt2", "llama3": "byte_level:llama3",
                     "qwen2": "byte_level:qwen2", "sentencepiece": "sentencepiece"}
    sp = BpeTokenizer.from_hf(fixtures["sentencepiece"])
    assert (sp.bos_id, sp.eos_id) == (1, 2)
    qwen = BpeTokenizer.from_hf(fixtures["qwen2"] / "tokenizer.json")
    assert qwen.config["eos_token"] == "<|im_end|>" and qwen.chat_template is None


# ---- refusals -------------------------------------------------------------------------------------
def edited(fixtures, tmp_path, family, edit) -> Path:
    data = json.loads((fixtures[family] / "tokenizer.json").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("family", "edit", "words"),
    [
        ("gpt2", lambda d: d["model"].update(type="Unigram"), "Unigram"),
        ("llama3", lambda d: d["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\w+"),
         "pre_tokenizer.Split.pattern"),
        ("gpt2", lambda d: d["model"]["merges"].append(["zzq", "qzz"]), "not in the vocabulary"),
        ("gpt2", lambda d: d["model"].update(merges=[], vocab={("NOT-A-BYTE" if t == "Ġ" else t): i for t, i in
                                                             d["model"]["vocab"].items()}),
         "lacks the token \"Ġ\" of byte 0x20"),
        ("qwen2", lambda d: d["added_tokens"][1].update(lstrip=True), "lstrip"),
        ("sentencepiece", lambda d: d.update(normalizer={"type": "Lowercase"}), "Lowercase"),
        ("llama3", lambda d: d["model"].update(dropout=0.1), "dropout"),
        ("gpt2", lambda d: d["model"]["vocab"].update({"extra": 10**6}), "no token has id"),
    ],
)
def test_unsupported_or_inconsistent_files_are_refused(fixtures, tmp_path, family, edit, words):
    path = edited(fixtures, tmp_path, family, edit)
    with pytest.raises(ValueError, match=words) as err:
        BpeTokenizer.from_hf(path)
    assert str(path) in str(err.value)


def test_bad_files_and_ids(fixtures, tmp_path):
    with pytest.raises(OSError):
        BpeTokenizer.from_hf(tmp_path / "missing")
    (tmp_path / "tokenizer.json").write_text('{"model": ', encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer.json"):
        BpeTokenizer.from_hf(tmp_path)
    tok = BpeTokenizer.from_hf(fixtures["gpt2"])
    for bad in (-1, tok.vocab_size):
        with pytest.raises(ValueError, match="out of range"):
            tok.decode([bad])
    with pytest.raises(ValueError, match="threads"):
        tok.encode("x", threads=0)
    with pytest.raises(TypeError):
        tok.encode(b"bytes")


# ---- GGUF ---------------------------------------------------------------------------------------------
def write_gguf(path: Path, model: str, tokens, types, merges=None, scores=None, pre=None, **ids):
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model(model)
    if pre:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if merges is not None:
        w.add_token_merges(merges)
    if scores is not None:
        w.add_token_scores(scores)
    for key, value in ids.items():
        getattr(w, f"add_{key}")(value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def vocab_in_order(data) -> list[str]:
    vocab = dict(data["model"]["vocab"])
    for t in data["added_tokens"]:
        vocab[t["content"]] = t["id"]
    return [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]


@pytest.mark.parametrize(("family", "pre"), [("llama3", "llama-bpe"), ("qwen2", "qwen2"), ("gpt2", "gpt-2")])
def test_gguf_byte_level_matches_tokenizer_json(fixtures, docs, tmp_path, family, pre):
    data = json.loads((fixtures[family] / "tokenizer.json").read_text(encoding="utf-8"))
    tokens = vocab_in_order(data)
    added = {t["id"]: t["special"] for t in data["added_tokens"]}
    types = [(3 if added[i] else 4) if i in added else 1 for i in range(len(tokens))]
    merges = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    path = write_gguf(tmp_path / "t.gguf", "gpt2", tokens, types, merges=merges, pre=pre,
                      eos_token_id=tokens.index(SPECIALS[family][-1]))
    ours = BpeTokenizer.from_gguf(path)
    assert ours.eos_id == tokens.index(SPECIALS[family][-1])
    # Qwen2's NFC normalizer is not in GGUF metadata: compare on NFC text.
    import unicodedata

    sample = [unicodedata.normalize("NFC", d) for d in docs[:40]]
    hf = hf_tokenizer(fixtures[family])
    assert ours.encode_batch(sample, allow_special=True) == [
        e.ids for e in hf.encode_batch(sample, add_special_tokens=False)]


def sentencepiece_merges(tokens: list[str], scores: list[float], mergeable: dict[str, int]):
    """HF's SentencePieceExtractor rule: every split of a piece into two pieces, by score."""
    merges = []
    for piece, score in zip(tokens, scores, strict=True):
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in mergeable and piece[k:] in mergeable]
        local.sort(key=lambda m: (mergeable[m[0]], mergeable[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)
    return [[a, b] for a, b, _ in merges]


def test_gguf_sentencepiece_matches_hf_with_derived_merges(fixtures, docs, tmp_path):
    data = json.loads((fixtures["sentencepiece"] / "tokenizer.json").read_text(encoding="utf-8"))
    tokens = vocab_in_order(data)
    types = [3 if i < 3 else 6 if i < 259 else 1 for i in range(len(tokens))]
    scores = [0.0] * 259 + [-float(i) for i in range(259, len(tokens))]
    path = write_gguf(tmp_path / "sp.gguf", "llama", tokens, types, scores=scores,
                      bos_token_id=1, eos_token_id=2, unk_token_id=0)
    ours = BpeTokenizer.from_gguf(path)
    assert (ours.bos_id, ours.eos_id, ours.kind) == (1, 2, "sentencepiece")
    mergeable = {t: i for i, t in enumerate(tokens) if types[i] == 1}
    data["model"]["merges"] = sentencepiece_merges(tokens, scores, mergeable)
    hf = tokenizers.Tokenizer.from_str(json.dumps(data))
    sample = docs[:40]
    assert ours.encode_batch(sample, allow_special=True) == [
        e.ids for e in hf.encode_batch(sample, add_special_tokens=False)]


def test_gguf_refusals(fixtures, tmp_path):
    good = write_gguf(tmp_path / "g.gguf", "gpt2", ["a", "b"], [1, 1], merges=[], pre="qwen2")
    blob = good.read_bytes()
    for cut in (3, 20, len(blob) // 2):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="truncated|GGUF"):
            BpeTokenizer.from_gguf(bad)
    other = write_gguf(tmp_path / "o.gguf", "bert", ["a"], [1])
    with pytest.raises(ValueError, match="bert"):
        BpeTokenizer.from_gguf(other)
    pre = write_gguf(tmp_path / "p.gguf", "gpt2", ["a"], [1], merges=[], pre="falcon")
    with pytest.raises(ValueError, match="falcon"):
        BpeTokenizer.from_gguf(pre)
    assert np.frombuffer(blob[:4], dtype=np.uint8).tobytes() == b"GGUF"
