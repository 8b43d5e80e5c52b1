"""Model-file formats against an independent reference: 2024.10 files written here by hand from the
specification (shared notes seed-format.md), read by the Rust engine; and every kind of bad file."""

import json
import struct

import numpy as np
import pytest
import torch
from helpers import tiny_model, torch_logits
from nano.engine import Engine
from nano.export import export_checkpoint, load_bin, read_bin
from nano.model import Transformer
from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

torch.set_num_threads(2)
TEXT = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏閏餘成歲律呂調陽雲騰致雨露結為霜金生麗水玉出崑岡"


def small_tokenizer() -> Tokenizer:
    chars = sorted(set(TEXT))
    tokens = list(DEFAULT_SPECIAL_TOKENS) + chars + ["天地", "宇宙"]
    tokens += [f"x{i}" for i in range(96 - len(tokens))]  # vocabulary of 96: a multiple of 32
    return Tokenizer.from_tokens(tokens, [t in DEFAULT_SPECIAL_TOKENS for t in tokens])


def small_model(seed=0, **kw) -> Transformer:
    return tiny_model(seed, **{"n_embd": 64, "n_hidden": 96, **kw})


# --- an independent 2024.10 writer, straight from the specification --------------------------------

def legacy_header(kind, cfg8, quant=(0, 0)):
    h = struct.pack("<IIiiii", 0x42443453, 0x55524C4D, 2024, 10, kind, 32)
    h += struct.pack("<8i", *cfg8) + struct.pack("<ii", *quant)
    return h + b"\0" * (256 - len(h))


def legacy_tokens(tok):
    body = b""
    for i in range(tok.vocab_size):
        s = tok.id_to_token(i)
        info = len(s) | (int(tok.is_special(i)) << 8) | 0xFFFF0000
        body += struct.pack("<II", info, i) + struct.pack(f"<{len(s)}I", *map(ord, s))
    return struct.pack("<II", len(body) + 8, tok.vocab_size) + body


def rope(c):
    hd = c.n_embd // c.n_head
    freqs = 1.0 / (10000.0 ** (np.arange(0, hd, 2) / hd))
    ang = np.outer(np.arange(c.block_size), freqs)
    return np.cos(ang).astype("<f4").tobytes() + np.sin(ang).astype("<f4").tobytes()


def f32(t):
    return t.detach().numpy().astype("<f4").tobytes()


def per_layer(model, attr):
    out = []
    for layer in model.layers:
        obj = layer
        for part in attr.split("."):
            obj = getattr(obj, part)
        out.append(obj.weight)
    return out


MATS = ["attention.wq", "attention.wk", "attention.wv", "attention.wo",
        "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"]


def legacy_cfg(c, shared=1):
    return [c.block_size, c.vocab_size, c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.n_hidden, shared]


def legacy_fp32(model, tok):
    c = model.config
    out = legacy_header(0, legacy_cfg(c)) + legacy_tokens(tok) + f32(model.tok_embeddings.weight)
    out += b"".join(f32(w) for w in per_layer(model, "attention_norm"))
    for name in MATS[:4]:
        out += b"".join(f32(w) for w in per_layer(model, name))
    out += b"".join(f32(w) for w in per_layer(model, "ffn_norm"))
    for name in MATS[4:]:
        out += b"".join(f32(w) for w in per_layer(model, name))
    return out + f32(model.norm.weight) + rope(c)


def legacy_int8(model, tok, group):
    """Type 800: groups of `group` over each flattened tensor (they may straddle rows)."""
    c = model.config
    out = legacy_header(0, legacy_cfg(c), (800, group)) + legacy_tokens(tok)
    out += b"".join(f32(w) for w in per_layer(model, "attention_norm"))
    out += b"".join(f32(w) for w in per_layer(model, "ffn_norm"))
    out += f32(model.norm.weight)
    deq = {}
    tensors = [("tok_embeddings.weight", model.tok_embeddings.weight)]
    for name in MATS:
        tensors += [(f"layers.{i}.{name}.weight", w) for i, w in enumerate(per_layer(model, name))]
    for name, w in tensors:
        flat = w.detach().numpy().reshape(-1, group)
        scale = np.abs(flat).max(axis=1) / 127.0
        q = np.round(flat / scale[:, None]).astype(np.int8)
        out += q.tobytes() + scale.astype("<f4").tobytes()
        deq[name] = (q.astype(np.float32) * scale[:, None]).reshape(w.shape)
    return out + rope(c), deq


def legacy_lora(rank, alpha, c, tensors):
    out = legacy_header(10, [rank, alpha, c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.n_hidden, 0])
    for t in ("wq", "wk", "wv", "wo"):
        for ab in ("lora_A", "lora_B"):
            out += b"".join(tensors[f"layers.{i}.attention.{t}.{ab}"].astype("<f4").tobytes()
                            for i in range(c.n_layer))
    return out


# --- tests -----------------------------------------------------------------------------------------

def test_hand_written_2024_fp32_file_matches_pytorch(tmp_path):
    tok, model = small_tokenizer(), small_model()
    path = tmp_path / "old.bin"
    path.write_bytes(legacy_fp32(model, tok))
    ids = tok.encode(TEXT[:20])
    got = Engine(path, threads=1).logits(ids)
    assert np.abs(got - torch_logits(model, ids)).max() < 1e-4
    back = load_bin(path)
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert Tokenizer.from_json(back.tokenizer_json).hash == tok.hash


@pytest.mark.parametrize("group", [32, 64])
def test_hand_written_2024_int8_file_including_straddling_groups(tmp_path, group):
    # n_hidden 96 with group 64: w2 rows of 96 values share groups with their neighbours
    tok, model = small_tokenizer(), small_model(seed=1)
    data, deq = legacy_int8(model, tok, group)
    path = tmp_path / "old_int8.bin"
    path.write_bytes(data)
    back = read_bin(path)["tensors"]
    for name, want in deq.items():
        # the reader dequantizes with the file's own (flattened) groups, then re-quantizes per row to q8_0:
        # every value is within half a q8_0 step of the file's value
        step = np.abs(want).reshape(want.shape[0], -1, 32).max(axis=2, keepdims=True) / 127
        err = np.abs(back[name] - want).reshape(want.shape[0], -1, 32)
        assert (err <= step / 2 + 1e-7).all(), name
    ref = small_model(seed=1)
    with torch.no_grad():
        for name, w in deq.items():
            ref.get_parameter(name).copy_(torch.from_numpy(w))
    ids = tok.encode(TEXT[:24])
    got = Engine(path, threads=1).logits(ids)
    want = torch_logits(ref, ids)
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()


def test_hand_written_2024_lora_plugin_matches_pytorch(tmp_path):
    from nano.lora import LoraConfig, apply_lora

    tok, model = small_tokenizer(), small_model(seed=2)
    (tmp_path / "base.bin").write_bytes(legacy_fp32(model, tok))
    apply_lora(model, LoraConfig(rank=4, alpha=8, targets=["wq", "wk", "wv", "wo"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    tensors = {k: v.detach().numpy() for k, v in model.state_dict().items() if ".lora_" in k}
    (tmp_path / "lora.bin").write_bytes(legacy_lora(4, 8, model.config, tensors))
    eng = Engine(tmp_path / "base.bin", threads=1)
    eng.load_lora(tmp_path / "lora.bin")
    ids = tok.encode(TEXT[:16])
    assert np.abs(eng.logits(ids) - torch_logits(model, ids)).max() < 1e-4


def test_exporter_legacy_and_new_files_give_identical_logits(tmp_path):
    tok, model = small_tokenizer(), small_model(seed=3)
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    new = export_checkpoint(ckpt, tmp_path / "new.bin")
    old = export_checkpoint(ckpt, tmp_path / "old.bin", legacy=True)
    assert old.read_bytes() == legacy_fp32(model, tok)  # byte-identical to the specification's layout
    ids = tok.encode(TEXT[:30])
    a, b = Engine(new, threads=1).logits(ids), Engine(old, threads=1).logits(ids)
    assert np.array_equal(a, b)
    assert np.abs(a - torch_logits(model, ids)).max() < 1e-4


@pytest.fixture()
def good_file(tmp_path):
    tok, model = small_tokenizer(), small_model()
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    return export_checkpoint(ckpt, tmp_path / "good.bin", "q8_0")


def expect_refused(path, *words):
    with pytest.raises(ValueError) as e:
        Engine(path)
    msg = str(e.value)
    assert any(w in msg for w in words), msg
    with pytest.raises(ValueError):
        read_bin(path)


def test_truncated_files(good_file, tmp_path):
    data = good_file.read_bytes()
    for cut in (0, 10, 63, 64, 300, len(data) // 2, len(data) - 1):
        p = tmp_path / f"cut{cut}.bin"
        p.write_bytes(data[:cut])
        expect_refused(p, "truncated", "too short")


def test_corrupted_files(good_file, tmp_path):
    data = bytearray(good_file.read_bytes())
    for pos in (100, len(data) // 3, len(data) - 5):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        p = tmp_path / f"flip{pos}.bin"
        p.write_bytes(bytes(bad))
        expect_refused(p, "checksum")


def test_wrong_magic_version_and_kind(good_file, tmp_path):
    data = good_file.read_bytes()
    cases = {
        "magic": b"GGUF" + data[4:],
        "version": data[:8] + struct.pack("<i", 2025) + data[12:],
        "minor": data[:12] + struct.pack("<i", 7) + data[16:],
    }
    for word, bad in cases.items():
        p = tmp_path / f"{word}.bin"
        p.write_bytes(bad)
        expect_refused(p, word if word != "minor" else "version")
    p = tmp_path / "text.bin"
    p.write_text("hello, I am not a model")
    expect_refused(p, "magic", "too short", "truncated")


def test_legacy_files_with_wrong_sizes(tmp_path):
    tok, model = small_tokenizer(), small_model()
    data = legacy_fp32(model, tok)
    c = model.config
    bad_cfg = legacy_header(0, legacy_cfg(c)[:3] + [128] + legacy_cfg(c)[4:])  # n_embd 128: wrong shape
    cases = {
        "shape": bad_cfg + data[256:],
        "longer": data + b"\0\0\0\0",
        "heads": legacy_header(0, legacy_cfg(c)[:5] + [3] + legacy_cfg(c)[6:]) + data[256:],
        "quant": legacy_header(0, legacy_cfg(c), (801, 64)) + data[256:],
        "vocab": legacy_header(0, [c.block_size, 97] + legacy_cfg(c)[2:]) + data[256:],
    }
    for name, bad in cases.items():
        p = tmp_path / f"{name}.bin"
        p.write_bytes(bad)
        expect_refused(p, "truncated", "longer", "multiple", "quantization", "tokenizer", "expected")


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(OSError):
        Engine(tmp_path / "nope.bin")


def test_lora_plugin_is_not_a_model_and_model_is_not_a_plugin(tmp_path, good_file):
    model = small_model()
    c = model.config
    tensors = {}
    for i in range(c.n_layer):
        for t, out_dim in (("wq", 64), ("wk", 32), ("wv", 32), ("wo", 64)):
            tensors[f"layers.{i}.attention.{t}.lora_A"] = np.zeros((2, 64), np.float32)
            tensors[f"layers.{i}.attention.{t}.lora_B"] = np.zeros((out_dim, 2), np.float32)
    p = tmp_path / "lora.bin"
    p.write_bytes(legacy_lora(2, 4, c, tensors))
    expect_refused(p, "LoRA")
    eng = Engine(good_file)
    with pytest.raises(ValueError):
        eng.load_lora(good_file)


def test_writer_refuses_wrong_shapes_and_bias(tmp_path):
    from nano import _native

    tok, model = small_tokenizer(), small_model()
    tensors = {k: v.numpy() for k, v in model.state_dict().items() if k != "output.weight"}
    cfg = dict(model.config.to_dict(), tied_head=True)
    bad = dict(tensors, **{"norm.weight": np.ones(65, np.float32)})
    with pytest.raises(ValueError, match="norm.weight"):
        _native.write_model(str(tmp_path / "x.bin"), json.dumps(cfg), tok.to_json(), bad)
    missing = {k: v for k, v in tensors.items() if k != "layers.1.ffn_norm.weight"}
    with pytest.raises(ValueError, match="missing"):
        _native.write_model(str(tmp_path / "x.bin"), json.dumps(cfg), tok.to_json(), missing)
    with pytest.raises(ValueError, match="bias"):
        _native.write_model(str(tmp_path / "x.bin"), json.dumps(dict(cfg, bias=True)), tok.to_json(), tensors)
    assert not list(tmp_path.iterdir())  # nothing half-written
