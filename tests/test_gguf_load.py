"""GGUF files (llama.cpp) load directly in Nano's engine, and convert with ``nano.export --from-gguf``.

The models are the random-weight ``Qwen2ForCausalLM`` / ``LlamaForCausalLM`` of tests/test_hf_import.py;
each is written as GGUF by the independent ``gguf`` package (PyPI) the way llama.cpp's converter lays it
out: ``qwen2`` q/k rows as in HF (llama.cpp rotates head halves for it), ``llama`` q/k rows permuted into
adjacent pairs (its ``LlamaModel.permute``), the vocabulary and chat template as ``tokenizer.ggml.*``
metadata. The engine's logits are compared with ``transformers``', its prompt ids with HF ``tokenizers``,
its chat prompts with ``apply_chat_template``; quantized GGUF tensors with a Nano file holding the same codes.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
gguf = pytest.importorskip("gguf")

import nano  # noqa: E402
import nano.export  # noqa: E402
from nano import _native  # noqa: E402
from nano.gguf import quantize_q4_0, quantize_q8_0  # noqa: E402
from nano.import_hf import import_hf  # noqa: E402
from test_bpe_tokenizer import sentencepiece_merges, vocab_in_order  # noqa: E402
from test_hf_import import CHATML as CHATML_  # noqa: E402
from test_hf_import import MESSAGES, MODELS, PROMPT, _build, _greedy  # noqa: E402

Q = gguf.GGMLQuantizationType
GGUF_MODELS = ["qwen2-tied", "qwen2-untied-gqa3", "llama2-sentencepiece", "llama3-scaled"]
PRE = {"qwen2": "qwen2", "llama3": "llama-bpe"}


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute: HF's half-split RoPE rows -> adjacent pairs."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama3_rope_factors(rope: dict, theta: float, head_dim: int) -> np.ndarray:
    """The rope_freqs tensor llama.cpp's converter writes for Llama 3 RoPE scaling (LlamaModel.
    generate_extra_tensors): per pair, the divisor of its frequency."""
    import math

    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    out = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def _encode(w: np.ndarray, dtype: str):
    """(data, raw_dtype) for GGUFWriter.add_tensor: Q8_0 / Q4_0 blocks with Nano's codes (nano.gguf)."""
    if w.ndim == 1 or dtype == "f32":
        return w.astype(np.float32), None
    if dtype == "f16":
        return w.astype(np.float16), None
    block = quantize_q8_0(w) if dtype == "q8_0" else quantize_q4_0(w)
    raw = np.frombuffer(block, dtype=np.uint8).reshape(w.shape[0], -1)
    return raw, Q.Q8_0 if dtype == "q8_0" else Q.Q4_0


def _tokenizer_metadata(w, d: Path, family: str) -> None:
    data = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    tc = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokens = vocab_in_order(data)
    added = {t["id"]: t["special"] for t in data["added_tokens"]}
    if family == "sentencepiece":
        w.add_tokenizer_model("llama")
        types = [3 if added.get(i) else 6 if t.startswith("<0x") else 1 for i, t in enumerate(tokens)]
        w.add_token_scores([0.0 if types[i] != 1 else -float(i) for i in range(len(tokens))])
        w.add_unk_token_id(tokens.index("<unk>"))
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(PRE[family])
        types = [(3 if added[i] else 4) if i in added else 1 for i in range(len(tokens))]
        w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]])
    hf = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))  # BOS as its post-processor adds it
    w.add_add_bos_token(len(hf.encode("x").ids) > len(hf.encode("x", add_special_tokens=False).ids))
    w.add_token_list(tokens)
    w.add_token_types(types)
    bos = tc.get("bos_token")
    if isinstance(bos, str) and bos in tokens:
        w.add_bos_token_id(tokens.index(bos))
    w.add_eos_token_id(tokens.index(tc["eos_token"]))
    w.add_chat_template(tc["chat_template"])


def write_gguf(d: Path, model, out: Path, family: str, dtype: str = "f32") -> Path:
    """The HF model in folder `d` as a llama.cpp GGUF (architecture qwen2 or llama), matrices in `dtype`."""
    cfg = model.config
    arch = "qwen2" if isinstance(model, transformers.Qwen2ForCausalLM) else "llama"
    w = gguf.GGUFWriter(str(out), arch=arch)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    rope = dict(getattr(cfg, "rope_parameters", None) or {})
    theta = float(getattr(cfg, "rope_theta", None) or rope["rope_theta"])
    w.add_rope_freq_base(theta)
    if rope.get("rope_type") == "llama3":  # (Llama 3.x's own original context, 8192, is the default)
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        w.add_tensor("rope_freqs.weight", _llama3_rope_factors(rope, theta, cfg.hidden_size // cfg.num_attention_heads))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    _tokenizer_metadata(w, d, family)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if not cfg.tie_word_embeddings:
        names["lm_head.weight"] = "output.weight"
    layer = {"input_layernorm.weight": "attn_norm", "post_attention_layernorm.weight": "ffn_norm",
             "self_attn.q_proj.weight": "attn_q", "self_attn.k_proj.weight": "attn_k",
             "self_attn.v_proj.weight": "attn_v", "self_attn.o_proj.weight": "attn_output",
             "mlp.gate_proj.weight": "ffn_gate", "mlp.up_proj.weight": "ffn_up", "mlp.down_proj.weight": "ffn_down"}
    for i in range(cfg.num_hidden_layers):
        for hf, g in layer.items():
            names[f"model.layers.{i}.{hf}"] = f"blk.{i}.{g}.weight"
        if arch == "qwen2":
            for p in "qkv":
                names[f"model.layers.{i}.self_attn.{p}_proj.bias"] = f"blk.{i}.attn_{p}.bias"
    for hf, g in names.items():
        t = sd[hf]
        if arch == "llama" and g.endswith(("attn_q.weight", "attn_k.weight")):
            t = _permute(t, cfg.num_attention_heads if "attn_q" in g else cfg.num_key_value_heads)
        data, raw = _encode(t, dtype)
        w.add_tensor(g, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module", params=GGUF_MODELS)
def loaded(request, tmp_path_factory):
    name = request.param
    root = tmp_path_factory.mktemp("gguf")
    d, model = _build(root, name)
    family = MODELS[name][1]
    path = write_gguf(d, model, root / f"{name}.gguf", family)
    return name, d, model, nano.Engine(path, threads=1), path


def _hf_tokenizer(name: str, d: Path):
    """HF tokenizers with the vocabulary the GGUF carries: for SentencePiece, the merges llama.cpp and HF's
    converter derive from the scores (the fixture's own merges are not in GGUF metadata)."""
    data = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    if MODELS[name][1] == "sentencepiece":
        tokens = vocab_in_order(data)
        added = {t["id"] for t in data["added_tokens"]}
        mergeable = {t: i for i, t in enumerate(tokens) if i not in added and not t.startswith("<0x")}
        scores = [-float(i) if t in mergeable else 0.0 for i, t in enumerate(tokens)]
        data["model"]["merges"] = sentencepiece_merges(tokens, scores, mergeable)
    return tokenizers.Tokenizer.from_str(json.dumps(data))


def test_f32_logits_match_transformers(loaded):
    # Same argument as test_hf_import.test_f32_logits_match_transformers: the GGUF holds the same float32
    # weights (renamed, q/k rows permuted, exact), so the logits differ from transformers' only in
    # summation order and RoPE angle rounding, near 1e-6 at these magnitudes; 1e-4 leaves two orders of
    # margin while a wrong row order, norm, bias or RoPE frequency moves logits by 0.1 or more.
    name, d, model, engine, _ = loaded
    ids = _hf_tokenizer(name, d).encode(PROMPT).ids[:48]
    assert len(ids) >= 24
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    got = engine.logits(ids)
    assert got.shape == (len(ids), model.config.vocab_size)
    assert float(np.abs(got - want).max()) <= 1e-4, name
    assert float(np.abs(want).max()) > 1.0
    assert engine._native.file_format == "Gguf"


def test_64_greedy_tokens_match_transformers(loaded):
    name, d, model, engine, _ = loaded
    ids = _hf_tokenizer(name, d).encode(PROMPT).ids[:16]
    want = _greedy(model, ids, 64)
    got = engine.logits(ids + want[:-1]).argmax(axis=-1)[len(ids) - 1:]
    assert got.tolist() == want


def test_prompt_ids_and_text_match_tokenizers(loaded):
    import unicodedata

    name, d, _, engine, _ = loaded
    hf = _hf_tokenizer(name, d)
    text = unicodedata.normalize("NFC", PROMPT)  # Qwen2's NFC normalizer is not in GGUF metadata
    assert engine.prompt_ids(text) == hf.encode(text).ids
    assert engine.tokenizer.encode(text) == hf.encode(text, add_special_tokens=False).ids
    ids = hf.encode(text).ids
    assert engine.tokenizer.decode(ids, skip_special=True) == hf.decode(ids, skip_special_tokens=True)


def test_chat_template_from_metadata_renders_as_transformers(loaded):
    _, d, _, engine, _ = loaded
    tok = transformers.AutoTokenizer.from_pretrained(d)
    for messages, gen in [(MESSAGES, True), (MESSAGES[1:2], True)]:
        want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        assert engine.render_chat(messages, add_generation_prompt=gen) == want


def test_engine_greedy_text_stops_at_the_eos_of_the_metadata(loaded):
    name, d, model, engine, _ = loaded
    hf = _hf_tokenizer(name, d)
    stop = hf.token_to_id(MODELS[name][4])
    ids = hf.encode(PROMPT).ids[:16]
    want = _greedy(model, ids, 32)
    if stop in want:
        want = want[:want.index(stop)]
    assert "".join(engine.generate(ids, max_new_tokens=32, temperature=0)) == hf.decode(
        want, skip_special_tokens=True)


# --- quantized tensors: the same codes as Nano's ------------------------------------------------------

def _same_codes_reference(f32_bin: Path, out: Path, dtype: str) -> Path:
    """A Nano file whose matrices hold what the GGUF's blocks hold: each matrix dequantized by the gguf
    package from nano.gguf's blocks, then quantized again by Nano's writer. Re-quantizing a dequantized block
    gives back its codes and scale exactly: its largest magnitude is 127·d (q8_0) or the -8·d of its first
    largest value (q4_0), so the writer's scale is that value / 127 (or / -8) = d exactly, and every value
    q·d divides back to q. f16 is the same rounding (to nearest even) on both sides."""
    data = nano.export.read_bin(f32_bin)
    tensors = {}
    for k, v in data["tensors"].items():
        if v.ndim == 2 and dtype in ("q8_0", "q4_0"):
            raw, qt = _encode(v, dtype)
            v = gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(v.shape)
        tensors[k] = np.ascontiguousarray(v, dtype=np.float32)
    _native.write_hf_model(str(out), json.dumps(data["config"]), data["info"]["hf_tokenizer"], tensors, dtype)
    return out


@pytest.mark.parametrize("dtype", ["f16", "q8_0", "q4_0"])
@pytest.mark.parametrize("name", ["qwen2-untied-gqa3", "llama2-sentencepiece"])
def test_quantized_gguf_gives_the_logits_of_the_same_codes(name, dtype, tmp_path):
    d, model = _build(tmp_path, name)
    path = write_gguf(d, model, tmp_path / f"{dtype}.gguf", MODELS[name][1], dtype)
    ref = _same_codes_reference(import_hf(d, tmp_path / "f32.bin"), tmp_path / f"{dtype}.bin", dtype)
    got, want = nano.Engine(path, threads=1), nano.Engine(ref, threads=1)
    assert nano.export.read_bin(path)["info"]["dtype"] == dtype
    ids = _hf_tokenizer(name, d).encode(PROMPT).ids[:32]
    # same codes, scales, kernels and order of operations: bit-identical, not merely close
    np.testing.assert_array_equal(got.logits(ids), want.logits(ids))


# --- Nano's own GGUF export and the converters ---------------------------------------------------------

@pytest.fixture(scope="module")
def nano_model(tmp_path_factory):
    from test_export_gguf import byte_tokenizer, checkpoint, small_model

    root = tmp_path_factory.mktemp("nano")
    tok = byte_tokenizer()
    ckpt = checkpoint(tok, small_model(tok.vocab_size))
    bin_path = nano.export.export_checkpoint(ckpt, root / "m.bin")
    return root, ckpt, bin_path


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_nanos_own_gguf_loads_back(nano_model, dtype):
    root, ckpt, bin_path = nano_model
    g = nano.export.export_gguf(root / f"m-{dtype}.gguf", checkpoint=ckpt, dtype=dtype)
    ours, theirs = nano.Engine(g, threads=1), nano.Engine(bin_path, threads=1)
    assert ours._native.tokenizer_kind == "nano"
    assert ours.tokenizer.tokens() == theirs.tokenizer.tokens()
    text = "天地玄黃 the \\n x" + chr(0x1F600)
    assert ours.prompt_ids(text) == theirs.prompt_ids(text)
    assert ours.prompt_ids(text, instruct=True) == theirs.prompt_ids(text, instruct=True)
    ids = theirs.prompt_ids(text)
    if dtype == "f32":  # the same float32 weights
        np.testing.assert_array_equal(ours.logits(ids), theirs.logits(ids))
    else:  # the GGUF's f16 weights / f16-rounded q8_0 scales: compare with the same rounding in a .bin
        data = nano.export.read_bin(g)
        assert data["info"]["dtype"] == dtype
        ref = root / f"ref-{dtype}.bin"
        _native.write_model(str(ref), json.dumps({k: v for k, v in data["config"].items()}),
                            data["tokenizer_json"], data["tensors"], dtype)
        np.testing.assert_array_equal(ours.logits(ids), nano.Engine(ref, threads=1).logits(ids))


def test_from_gguf_converts_to_nano_format(loaded, tmp_path):
    name, d, _, engine, path = loaded
    out = tmp_path / "conv.bin"
    r = subprocess.run([sys.executable, "-m", "nano.export", str(out), "--from-gguf", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    conv = nano.Engine(out, threads=1)
    assert conv._native.file_format == "Nano2026" and conv.config == engine.config
    ids = _hf_tokenizer(name, d).encode(PROMPT).ids[:24]
    np.testing.assert_array_equal(conv.logits(ids), engine.logits(ids))
    assert conv.render_chat(MESSAGES) == engine.render_chat(MESSAGES)
    assert conv.prompt_ids(PROMPT) == engine.prompt_ids(PROMPT)
    q = tmp_path / "q8.bin"
    r = subprocess.run([sys.executable, "-m", "nano.export", str(q), "--from-gguf", str(path), "--quant", "q8_0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert nano.export.read_bin(q)["info"]["dtype"] == "q8_0"


def test_nano_infer_runs_a_gguf(loaded):
    from test_cli import nano_infer_binary

    name, d, _, engine, path = loaded
    want = "".join(engine.generate(PROMPT, max_new_tokens=12, temperature=0))
    r = subprocess.run([str(nano_infer_binary()), str(path), "--prompt", PROMPT, "-n", "12", "-t", "0",
                        "--threads", "1", "--ctx", "128"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(engine.prompt_ids(PROMPT)) + 12 <= 128  # the limit leaves room for all 12 tokens
    assert r.stdout.rstrip("\n") == want
    kv = nano.Engine(path, threads=1, ctx=128).kv_cache_bytes
    assert f"context 128 tokens; KV cache up to {kv / 2**20:.1f} MiB (f32)" in r.stderr


# --- the context limit --------------------------------------------------------------------------------

def test_ctx_limits_the_context_and_the_kv_cache(loaded):
    _, _, model, full, path = loaded
    cfg = model.config
    small = nano.Engine(path, threads=1, ctx=40)
    assert small.config["block_size"] == 40 and full.config["block_size"] == cfg.max_position_embeddings
    # keys are kept in whole blocks of positions, values per position; f16 halves each element
    hd = cfg.hidden_size // cfg.num_attention_heads
    per_pos = cfg.num_hidden_layers * cfg.num_key_value_heads * hd
    assert full.kv_cache_bytes == 4 * per_pos * (2 * cfg.max_position_embeddings)  # 256: whole blocks
    assert per_pos * 4 * 80 <= small.kv_cache_bytes <= per_pos * 4 * (40 + 64)
    assert nano.Engine(path, threads=1, ctx=40, kv_cache="f16").kv_cache_bytes * 2 == small.kv_cache_bytes
    ids = list(range(5, 45))
    with pytest.raises(ValueError, match="context"):
        small.logits(ids + [5])
    # the limit changes where the cache stops, not what it holds
    np.testing.assert_array_equal(small.logits(ids), full.logits(ids))
    for bad in (0, cfg.max_position_embeddings + 1):
        with pytest.raises(ValueError, match="context"):
            nano.Engine(path, threads=1, ctx=bad)


# --- bad inputs --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_gguf(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    d, model = _build(root, "qwen2-tied")
    return d, model, write_gguf(d, model, root / "ok.gguf", "qwen2")


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(ValueError) as e:
        nano.Engine(path, threads=1)
    msg = str(e.value)
    for n in needles:
        assert n in msg, msg
    return msg


def _rewrite(src: Path, out: Path, *, meta=None, drop=(), retype=None, arch=None) -> Path:
    """A copy of a GGUF with metadata values replaced, tensors dropped or one tensor's type changed."""
    reader = gguf.GGUFReader(str(src))
    arch = arch or reader.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(out), arch=arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = (meta or {}).get(key, field.contents())
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_array(key, value)
        else:
            w.add_key_value(key, value, vtype)
    for t in reader.tensors:
        if t.name in drop:
            continue
        if retype and t.name == retype[0]:
            cols, rows = int(t.shape[0]), int(np.prod(t.shape[1:]))  # the reader lists ggml's order
            block, size = gguf.GGML_QUANT_SIZES[retype[1]]
            w.add_tensor(t.name, np.zeros((rows, cols // block * size), dtype=np.uint8), raw_dtype=retype[1])
        else:
            w.add_tensor(t.name, np.array(t.data), raw_shape=list(reversed([int(x) for x in t.shape])),
                         raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def test_unknown_architecture_is_refused_by_name(small_gguf, tmp_path):
    _, _, ok = small_gguf
    bad = _rewrite(ok, tmp_path / "x.gguf", arch="mixtral")
    _refused(bad, "mixtral", "general.architecture", str(bad))


def test_unsupported_tensor_types_are_named(small_gguf, tmp_path):
    _, model, ok = small_gguf
    for qt in (Q.Q4_1, Q.Q5_1):
        bad = _rewrite(ok, tmp_path / "k.gguf", retype=("blk.0.ffn_down.weight", qt))
        _refused(bad, "blk.0.ffn_down.weight", qt.name, "F32, F16, BF16, Q8_0, Q4_0")


# d (and dmin) of each block type's layout, set to small f16 values so that random codes stay finite
_SCALES = {Q.Q5_0: [0], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}


def _q8_0_values(x: np.ndarray) -> np.ndarray:
    """What Nano's q8_0 stores for float32 rows x, dequantized: d = max|x| / 127 per 32 values (f32),
    q = round(x / d) halves away from zero."""
    g = x.reshape(-1, 32)
    d = (np.abs(g).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(d != 0, g / d, np.float32(0))
    q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    return (q.astype(np.float32) * d).reshape(x.shape)


@pytest.mark.parametrize("qt", list(_SCALES))
def test_k_quants_and_q5_0_are_requantized_to_q8_0(tmp_path, qt):
    # ffn_down of a 256-wide FFN is rows of 256 values, one K-quant super-block each
    import test_hf_import

    test_hf_import.MODELS["qwen2-ffn256"] = ("qwen2", "qwen2", dict(MODELS["qwen2-tied"][2], intermediate_size=256),
                                             CHATML_, "<|im_end|>")
    try:
        d, model = _build(tmp_path, "qwen2-ffn256")
    finally:
        del test_hf_import.MODELS["qwen2-ffn256"]
    ok = write_gguf(d, model, tmp_path / "ok.gguf", "qwen2")
    block, size = gguf.GGML_QUANT_SIZES[qt]
    rng = np.random.default_rng(int(qt))
    raw = rng.integers(0, 256, size=(64, 256 // block * size), dtype=np.uint8)
    blocks = raw.reshape(-1, size)
    for k, at in enumerate(_SCALES[qt]):
        blocks[:, at:at + 2] = np.frombuffer(np.float16(0.01 / (k + 1)).tobytes(), dtype=np.uint8)
    bad = _rewrite(ok, tmp_path / "k.gguf", retype=("blk.0.ffn_down.weight", qt))
    # put the random blocks in place of the zeros _rewrite wrote
    data = bytearray(bad.read_bytes())
    reader = gguf.GGUFReader(str(bad))
    t = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    data[t.data_offset:t.data_offset + raw.size] = raw.tobytes()
    bad.write_bytes(bytes(data))
    got = nano.export.read_bin(bad)["tensors"]["layers.0.feed_forward.w2.weight"]
    want = _q8_0_values(gguf.quants.dequantize(raw, qt).astype(np.float32).reshape(64, 256))
    np.testing.assert_array_equal(got, want)  # ggml's dequantization, then Nano's q8_0, exactly
    assert np.abs(want).max() > 0


def test_missing_tensors_and_disagreeing_shapes_are_refused(small_gguf, tmp_path):
    _, model, ok = small_gguf
    _refused(_rewrite(ok, tmp_path / "m.gguf", drop=("blk.1.ffn_up.weight",)), "blk.1.ffn_up.weight", "missing")
    _refused(_rewrite(ok, tmp_path / "b.gguf", drop=("blk.0.attn_k.bias",)), "blk.0.attn_k.bias", "missing")
    n = model.config.intermediate_size
    _refused(_rewrite(ok, tmp_path / "s.gguf", meta={"qwen2.feed_forward_length": n + 32}),
             "blk.0.ffn_gate.weight", "shape")
    _refused(_rewrite(ok, tmp_path / "e.gguf", meta={"qwen2.attention.layer_norm_rms_epsilon": -1.0}),
             "qwen2.attention.layer_norm_rms_epsilon")
    _refused(_rewrite(ok, tmp_path / "t.gguf", meta={"tokenizer.ggml.model": "bert"}), "tokenizer.ggml.model", "bert")


def test_truncated_and_absurd_files_are_refused(small_gguf, tmp_path):
    _, _, ok = small_gguf
    blob = ok.read_bytes()
    header_end = blob.index(b"token_embd.weight")
    for cut in sorted({4, 12, 23, 100, header_end, header_end + 40, len(blob) // 2, len(blob) - 1}):
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(blob[:cut])
        msg = _refused(p)
        assert "truncated" in msg or "cannot fit" in msg or "ends" in msg, (cut, msg)
    for offset, value, needle in [(8, 1 << 60, "tensor count"), (16, 1 << 60, "metadata count"),
                                  (4, 7, "version 7")]:
        b = bytearray(blob)
        if offset == 4:
            b[4:8] = struct.pack("<I", value)
        else:
            b[offset:offset + 8] = struct.pack("<Q", value)
        p = tmp_path / f"absurd{offset}.gguf"
        p.write_bytes(bytes(b))
        _refused(p, needle)


def test_rope_freqs_that_are_not_llama3_scaling_are_refused(small_gguf, tmp_path):
    _, _, ok = small_gguf
    reader = gguf.GGUFReader(str(ok))
    w = gguf.GGUFWriter(str(tmp_path / "r.gguf"), arch="qwen2")
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_array(key, field.contents())
        else:
            w.add_key_value(key, field.contents(), field.types[0])
    for t in reader.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_shape=list(reversed([int(x) for x in t.shape])),
                     raw_dtype=t.tensor_type)
    w.add_tensor("rope_freqs.weight", np.arange(1, 9, dtype=np.float32))  # no Llama 3 scaling makes these
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _refused(tmp_path / "r.gguf", "rope_freqs.weight", "not Llama 3 scaling")


def test_from_gguf_refusal_leaves_no_output(small_gguf, tmp_path):
    _, _, ok = small_gguf
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(ok.read_bytes()[:1000])
    out = tmp_path / "out.bin"
    r = subprocess.run([sys.executable, "-m", "nano.export", str(out), "--from-gguf", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and str(bad) in r.stderr and "truncated" in r.stderr, r.stderr
    assert not out.exists() and list(tmp_path.glob(".out.bin*")) == []
