"""Hugging Face export checked by the libraries people load it with: `safetensors`, `tokenizers` and
`transformers` (each test skips when its library is absent)."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nano.engine import Engine
from nano.export import export_checkpoint, export_hf
from nano.export_hf import half_split_rows, write_safetensors
from nano.tokenizer import Tokenizer
from test_export_gguf import TEXT, byte_tokenizer, checkpoint, small_model

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tok = byte_tokenizer()
    model = small_model(tok.vocab_size, seed=7)
    d = tmp_path_factory.mktemp("hf")
    ck = checkpoint(tok, model)
    return tok, model, export_hf(d / "hf", checkpoint=ck), export_checkpoint(ck, d / "m.bin")


def test_half_split_rows_turns_interleaved_rope_into_rotate_half():
    """q rotated Nano's way equals, after the row permutation, q rotated the HF way."""
    hd, heads, theta, pos = 8, 2, 10000.0, 5
    rng = np.random.default_rng(0)
    w = rng.standard_normal((hd * heads, 6)).astype(np.float64)
    x = rng.standard_normal(6)
    freqs = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(pos * freqs), np.sin(pos * freqs)
    q = (w @ x).reshape(heads, hd // 2, 2)
    nano = np.stack([q[..., 0] * cos - q[..., 1] * sin, q[..., 0] * sin + q[..., 1] * cos], -1).reshape(heads, hd)
    qh = (half_split_rows(w, heads) @ x).reshape(heads, hd)
    c2, s2 = np.concatenate([cos, cos]), np.concatenate([sin, sin])
    rot = np.concatenate([-qh[:, hd // 2:], qh[:, : hd // 2]], -1)
    hf = qh * c2 + rot * s2
    # Same vector up to the same permutation of its components: scores q.k are unchanged.
    np.testing.assert_allclose(half_split_rows(nano.reshape(-1, 1), heads).reshape(heads, hd), hf, atol=1e-12)


def test_safetensors_read_back(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b.c": np.ones(5, np.float32)}
    write_safetensors(tmp_path / "x.safetensors", tensors, {"format": "pt"})
    back = st_numpy.load_file(str(tmp_path / "x.safetensors"))
    assert back.keys() == tensors.keys()
    for k in tensors:
        np.testing.assert_array_equal(back[k], tensors[k])


def test_directory_contents(exported):
    tok, model, out, _ = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["tie_word_embeddings"] is True
    assert cfg["eos_token_id"] == tok.token_to_id("<|eos|>")


def test_refuses_a_non_empty_directory(exported, tmp_path):
    tok, model, _, _ = exported
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty directory"):
        export_hf(tmp_path / "busy", checkpoint=checkpoint(tok, model))
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_transformers_logits_match_nano_engine(exported):
    transformers = pytest.importorskip("transformers")
    tok, model, out, bin_path = exported
    hf = transformers.LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    ids = tok.encode(TEXT[:20] + " the 债")
    with torch.no_grad():
        got = hf(torch.tensor([ids])).logits[0].numpy()
    want = Engine(bin_path, threads=1).logits(ids)
    # Both are f32 forward passes of the same weights in different summation orders; logits of this
    # model are O(1), and f32 rounding over a few hundred-term dot products stays far below 1e-4.
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def hf_tokenizer(out):
    tokenizers = pytest.importorskip("tokenizers")
    return tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))


MIXED = ["天地玄黃 the theory", "债券贷款涨价 ünïcödé 😀 ∑ \\n \\x41 <0x41>", "\0a\n\\", "  the\tthe\r\n"]


def test_tokenizers_ids_equal_nano_ids(exported):
    tok, _, out, _ = exported
    hft = hf_tokenizer(out)
    for text in MIXED:
        assert hft.encode(text, add_special_tokens=False).ids == tok.encode(text), text
        assert hft.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(TEXT[:10]) + list("the \\x\n") + ["债", "é", "😀", "\0"])
               | st.characters(exclude_categories=["Cs"]), max_size=60))
def test_tokenizers_ids_equal_nano_ids_on_any_text(exported, text):
    tok, _, out, _ = exported
    assert hf_tokenizer(out).encode(text, add_special_tokens=False).ids == tok.encode(text)


def test_special_tokens_as_in_nano(exported):
    tok, _, out, _ = exported
    hft = hf_tokenizer(out)
    text = "the<|eos|>天地"
    assert hft.encode(text, add_special_tokens=False).ids == tok.encode(text, allow_special=True)


def test_auto_tokenizer_gives_nano_ids(exported):
    transformers = pytest.importorskip("transformers")
    tok, _, out, _ = exported
    at = transformers.AutoTokenizer.from_pretrained(out)
    for text in MIXED:
        assert at(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    text = "the<|eos|>天地"
    assert at(text, add_special_tokens=False)["input_ids"] == tok.encode(text, allow_special=True)
    msgs = [{"role": "user", "content": "天地"}]
    assert at.apply_chat_template(msgs, tokenize=False) == "<|instruct_mark|>天地<|response_mark|>"


def test_tokenizers_on_shared_corpora(shared_data, tmp_path):
    files = ["pretrain_psycho.txt", "pretrain_amateur_radio.txt"]
    tok = Tokenizer.build_from_texts([(shared_data / f).read_text(encoding="utf-8")[:200_000] for f in files],
                                     4096, byte_fallback=True, threads=2)
    from nano.export_hf import hf_tokenizer_json

    (tmp_path / "tokenizer.json").write_text(json.dumps(hf_tokenizer_json(tok)), encoding="utf-8")
    hft = hf_tokenizer(tmp_path)
    for f in [*files, "pretrain_chinese_classic.txt"]:
        lines = (shared_data / f).read_text(encoding="utf-8")[:30_000].split("\n")
        got = [e.ids for e in hft.encode_batch(lines, add_special_tokens=False)]
        assert got == tok.encode_batch(lines), f
