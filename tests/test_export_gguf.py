"""GGUF export read back by the independent `gguf` package (PyPI), and the exported vocabulary run
through a Python statement of llama.cpp's `rwkv` tokenizer (llama-vocab.cpp: llama_unescape_rwkv_token
and llm_tokenizer_rwkv_session::tokenize) against Nano's own encode."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from nano.export import export_checkpoint, export_gguf, main, read_bin
from nano.export_gguf import CHAT_TEMPLATE, gguf_tokens
from nano.gguf import quantize_q4_0, quantize_q8_0
from nano.model import ModelConfig, Transformer
from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

gguf = pytest.importorskip("gguf")

TEXT = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏閏餘成歲律呂調陽雲騰致雨露結為霜金生麗水玉出崑岡"


def byte_tokenizer(extra=()) -> Tokenizer:
    """Special tokens, the 256 byte tokens, printable ASCII, the characters of TEXT and a few words."""
    chars = sorted(set(TEXT) | {chr(c) for c in range(32, 127)} | {"\n", "\\"})
    tokens = list(DEFAULT_SPECIAL_TOKENS) + [f"<0x{b:02X}>" for b in range(256)] + chars
    tokens += ["天地", "宇宙", "日月", "the", "th", " the", "\\n", *extra]
    tokens += [f"w{i}" for i in range(-len(tokens) % 32)]  # a multiple of 32 for the quantized head
    return Tokenizer.from_tokens(tokens, [t in DEFAULT_SPECIAL_TOKENS for t in tokens])


def small_model(vocab_size, seed=0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(block_size=128, vocab_size=vocab_size, n_layer=2, n_embd=64, n_head=4, n_kv_head=2,
                      n_hidden=96)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
    return model


def checkpoint(tok, model) -> dict:
    return {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}


# --- llama.cpp's rwkv tokenizer, restated from its C++ source ----------------------------------------

def rwkv_unescape(text: str) -> bytes:
    """llama_unescape_rwkv_token: \\t \\n \\r, \\xhh (lower-case hex), \\<other> = <other>."""
    out, raw, i = bytearray(), text.encode("utf-8"), 0
    while i < len(raw):
        c = raw[i]
        if c == ord("\\") and i + 1 < len(raw):
            e = raw[i + 1]
            if e == ord("x"):
                out.append(int(raw[i + 2:i + 4].decode(), 16))
                i += 4
                continue
            out.append({ord("t"): 9, ord("n"): 10, ord("r"): 13}.get(e, e))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def rwkv_tokenize(texts: list[str], unk: int, text: str) -> list[int]:
    """llm_tokenizer_rwkv_session::tokenize: greedy longest match over a byte trie of every token
    (a later id overwrites an earlier one with the same bytes), one unknown per unmatched byte."""
    trie: dict = {}
    for i, t in enumerate(texts):
        node = trie
        for b in rwkv_unescape(t):
            node = node.setdefault(b, {})
        node[None] = i
    data, pos, out = text.encode("utf-8"), 0, []
    while pos < len(data):
        node, best, end, p = trie.get(data[pos]), None, pos + 1, pos
        if node is None:
            out.append(unk)
            pos += 1
            continue
        while node is not None:
            if None in node:
                best, end = node[None], p + 1
            p += 1
            node = node.get(data[p]) if p < len(data) else None
        out.append(best)
        pos = end
    return out


# --- the tests ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tok = byte_tokenizer()
    model = small_model(tok.vocab_size, seed=3)
    d = tmp_path_factory.mktemp("gguf")
    paths = {q: export_gguf(d / f"m-{q}.gguf", checkpoint=checkpoint(tok, model), dtype=q)
             for q in ("f32", "f16", "q8_0", "q4_0")}
    return tok, model, paths


def fields(reader) -> dict:
    out = {}
    for name, f in reader.fields.items():
        out[name] = f.contents()
    return out


def test_metadata_and_tokenizer_read_back(exported):
    tok, model, paths = exported
    r = gguf.GGUFReader(paths["f32"])
    meta = fields(r)
    c = model.config
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == c.n_layer
    assert meta["llama.embedding_length"] == c.n_embd
    assert meta["llama.feed_forward_length"] == c.n_hidden
    assert meta["llama.attention.head_count"] == c.n_head
    assert meta["llama.attention.head_count_kv"] == c.n_kv_head
    assert meta["llama.context_length"] == c.block_size
    assert meta["llama.rope.dimension_count"] == c.head_dim
    assert meta["llama.rope.freq_base"] == pytest.approx(c.rope_theta)
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(c.norm_eps)
    assert meta["tokenizer.ggml.model"] == "rwkv"
    assert meta["tokenizer.ggml.eos_token_id"] == tok.token_to_id("<|eos|>")
    assert meta["tokenizer.ggml.bos_token_id"] == tok.token_to_id("<|bos|>")
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    texts = meta["tokenizer.ggml.tokens"]
    assert len(texts) == tok.vocab_size
    # Unescaped, every token is its Nano text (a byte token: its one byte).
    for i, t in enumerate(texts):
        b = tok.byte_value(i)
        assert rwkv_unescape(t) == (bytes([b]) if b is not None else tok.id_to_token(i).encode())
    types = meta["tokenizer.ggml.token_type"]
    assert types[tok.token_to_id("<|eos|>")] == 3 and types[tok.token_to_id("<0xE5>")] == 6
    assert types[tok.token_to_id("天地")] == 1


def test_chat_template_renders_nano_sft_format():
    jinja2 = pytest.importorskip("jinja2")
    msgs = [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"},
            {"role": "user", "content": "再问"}]
    out = jinja2.Template(CHAT_TEMPLATE).render(messages=msgs)
    assert out == "<|instruct_mark|>问<|response_mark|>答<|eos|><|instruct_mark|>再问<|response_mark|>"


def test_tensors_read_back(exported):
    tok, model, paths = exported
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    r = gguf.GGUFReader(paths["f32"])
    tensors = {t.name: t for t in r.tensors}
    assert "output.weight" not in tensors  # tied: llama.cpp uses token_embd
    assert len(tensors) == 2 + 9 * model.config.n_layer
    wq = tensors["blk.1.attn_q.weight"]
    assert wq.tensor_type == gguf.GGMLQuantizationType.F32
    assert list(wq.shape) == [model.config.n_embd, model.config.n_embd]  # ggml order: [in, out]
    np.testing.assert_array_equal(np.asarray(wq.data).reshape(64, 64), state["layers.1.attention.wq.weight"])
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.ffn_gate.weight"].data).reshape(96, 64),
                                  state["layers.0.feed_forward.w1.weight"])
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.ffn_down.weight"].data).reshape(64, 96),
                                  state["layers.0.feed_forward.w2.weight"])
    np.testing.assert_array_equal(np.asarray(tensors["output_norm.weight"].data), state["norm.weight"])
    r16 = {t.name: t for t in gguf.GGUFReader(paths["f16"]).tensors}
    emb16 = r16["token_embd.weight"]
    assert emb16.tensor_type == gguf.GGMLQuantizationType.F16
    np.testing.assert_array_equal(np.asarray(emb16.data).reshape(-1, 64),
                                  state["tok_embeddings.weight"].astype(np.float16))
    assert r16["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


@pytest.mark.parametrize("quant, qtype", [("q8_0", "Q8_0"), ("q4_0", "Q4_0")])
def test_quantized_blocks_dequantize_like_ggml(exported, quant, qtype):
    """gguf-py's own dequantizer (a port of ggml's) reads our blocks; values are within half a step of
    the f32 weights plus the f16 rounding of the scale."""
    tok, model, paths = exported
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    t = {t.name: t for t in gguf.GGUFReader(paths[quant]).tensors}["blk.0.attn_k.weight"]
    assert t.tensor_type == getattr(gguf.GGMLQuantizationType, qtype)
    got = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(32, 64)
    w = state["layers.0.attention.wk.weight"]
    top = 127 if quant == "q8_0" else 8
    step = np.abs(w).reshape(-1, 32).max(axis=1) / top
    err = np.abs(got - w).reshape(-1, 32).max(axis=1)
    # Half a step from rounding the code (a whole step for q4_0, whose codes stop at +7 while values
    # reach +8 steps on the side opposite the scale's sign), plus the f16 rounding of the scale
    # (relative 2^-11) times the largest code; 1e-6 covers the f32 arithmetic of the reference itself.
    rounding = 0.5 if quant == "q8_0" else 1.0
    assert np.all(err <= step * (rounding + 2.0**-11 * top) + 1e-6)
    if quant == "q8_0":  # gguf-py's Q8_0 quantizer rounds x / d half away from zero, as Nano does
        ref = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
        assert ref.tobytes() == np.asarray(t.data).tobytes()


@pytest.mark.parametrize("quant", ["q8_0", "q4_0"])
def test_block_codes_are_nanos_codes(tmp_path, quant):
    """Nano's quantized file and the GGUF share every code; only the scale's type differs."""
    tok = byte_tokenizer()
    model = small_model(tok.vocab_size, seed=4)
    nano_deq = read_bin(export_checkpoint(checkpoint(tok, model), tmp_path / "m.bin", quant))["tensors"]
    name = "layers.1.feed_forward.w3.weight"
    w = model.state_dict()[name].numpy()
    blocks = w.reshape(-1, 32)
    if quant == "q8_0":
        scale = np.abs(blocks).max(axis=1) / np.float32(127)
        got = np.frombuffer(quantize_q8_0(w), dtype=[("d", "<f2"), ("qs", "i1", 32)])
        codes = got["qs"].astype(np.int32)
    else:
        scale = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)] / np.float32(-8)
        got = np.frombuffer(quantize_q4_0(w), dtype=[("d", "<f2"), ("qs", "u1", 16)])
        codes = np.concatenate([got["qs"] & 15, got["qs"] >> 4], axis=1).astype(np.int32) - 8
    nano_codes = np.rint(nano_deq[name].reshape(-1, 32) / scale[:, None]).astype(np.int32)
    np.testing.assert_array_equal(codes, nano_codes)
    np.testing.assert_array_equal(got["d"], scale.astype(np.float16))


def test_quantizers_handle_zero_blocks():
    w = np.zeros((2, 64), np.float32)
    assert np.frombuffer(quantize_q8_0(w), dtype=[("d", "<f2"), ("qs", "i1", 32)])["qs"].max() == 0
    q4 = np.frombuffer(quantize_q4_0(w), dtype=[("d", "<f2"), ("qs", "u1", 16)])["qs"]
    assert np.all(q4 == 0x88)  # code 8 is zero
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q8_0(np.zeros((2, 40), np.float32))


def check_rwkv(tok, text):
    texts, _ = gguf_tokens(tok)
    assert rwkv_tokenize(texts, tok.unknown_id, text) == tok.encode(text)


def test_rwkv_rule_is_nanos_rule_on_mixed_text():
    tok = byte_tokenizer()
    for text in ["天地玄黃 the theory", "债券贷款涨价 ünïcödé 😀 ∑ \\n \\x41 <0x41>", "\0a\n\\", ""]:
        check_rwkv(tok, text)
        assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(TEXT[:10]) + list("the \\x\n") + ["债", "é", "😀", "\0"])
               | st.characters(exclude_categories=["Cs"]), max_size=60))
def test_rwkv_rule_is_nanos_rule_on_any_text(text):
    # The one documented difference (docs/interop.md): llama.cpp's trie also matches special tokens.
    assume(not any(s in text for s in DEFAULT_SPECIAL_TOKENS))
    check_rwkv(byte_tokenizer(), text)


def test_special_token_text_is_the_documented_difference():
    tok = byte_tokenizer()
    texts, _ = gguf_tokens(tok)
    text = "a<|eos|>b"
    assert rwkv_tokenize(texts, tok.unknown_id, text) == tok.encode(text, allow_special=True)
    assert tok.encode(text, allow_special=True) != tok.encode(text)


def test_rwkv_rule_on_shared_corpora(shared_data):
    files = ["pretrain_psycho.txt", "pretrain_amateur_radio.txt"]
    tok = Tokenizer.build_from_texts([(shared_data / f).read_text(encoding="utf-8")[:200_000] for f in files],
                                     2048, byte_fallback=True, threads=2)
    texts, _ = gguf_tokens(tok)
    for f in [*files, "pretrain_chinese_classic.txt"]:
        sample = (shared_data / f).read_text(encoding="utf-8")[:20_000]
        assert rwkv_tokenize(texts, tok.unknown_id, sample) == tok.encode(sample), f


def test_refuses_what_llama_cpp_cannot_reproduce(tmp_path):
    plain = Tokenizer.from_tokens(list(DEFAULT_SPECIAL_TOKENS) + ["a"], [True] * 7 + [False])
    with pytest.raises(ValueError, match="byte-fallback"):
        gguf_tokens(plain)
    # A byte token after the ordinary token of the same byte would lose in llama.cpp's trie.
    tokens = list(DEFAULT_SPECIAL_TOKENS) + ["A"] + [f"<0x{b:02X}>" for b in range(256)]
    late = Tokenizer.from_tokens(tokens, [t in DEFAULT_SPECIAL_TOKENS for t in tokens])
    with pytest.raises(ValueError, match="after the token 'A'"):
        gguf_tokens(late)
    tok = byte_tokenizer()
    model = small_model(tok.vocab_size)
    ck = checkpoint(tok, model)
    ck["model_config"] = {**ck["model_config"], "use_rope": False}
    with pytest.raises(ValueError, match="position embeddings"):
        export_gguf(tmp_path / "x.gguf", checkpoint=ck)
    assert not (tmp_path / "x.gguf").exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_picks_gguf_by_extension_and_from_bin(tmp_path, capsys):
    tok = byte_tokenizer()
    model = small_model(tok.vocab_size, seed=1)
    torch.save({"format": "nano-checkpoint", "version": 1, "step": 0, **checkpoint(tok, model)}, tmp_path / "c.pt")
    assert main([str(tmp_path / "a.gguf"), "--checkpoint", str(tmp_path / "c.pt"), "--quant", "q8_0"]) == 0
    assert main([str(tmp_path / "m.bin"), "--checkpoint", str(tmp_path / "c.pt")]) == 0
    assert main([str(tmp_path / "b.out"), "--format", "gguf", "--from-bin", str(tmp_path / "m.bin")]) == 0
    r = gguf.GGUFReader(tmp_path / "b.out")
    assert {t.name for t in r.tensors} == {t.name for t in gguf.GGUFReader(tmp_path / "a.gguf").tensors}
    with pytest.raises(SystemExit):
        main([str(tmp_path / "c.gguf"), "--checkpoint", str(tmp_path / "c.pt"), "--legacy"])
