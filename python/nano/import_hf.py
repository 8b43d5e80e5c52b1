"""Hugging Face model folders -> Nano model files (``python -m nano.export OUT.bin --from-hf DIR``).

Reads ``config.json``, the safetensors weights (one file or shards listed in
``model.safetensors.index.json``), ``tokenizer.json``, ``tokenizer_config.json`` (special tokens, chat
template; ``chat_template.jinja`` when present) and ``generation_config.json`` (stop ids), and writes a
Nano 2026.2 file through the Rust writer. Runs without ``transformers``; safetensors are read here with
NumPy (a small, fully checked format), so every bad input is refused naming its file and field.

Architectures: ``Qwen2ForCausalLM`` (q/k/v biases) and ``LlamaForCausalLM`` (Llama 2 / 3.x, TinyLlama,
SmolLM2; Llama 3 RoPE scaling). HF checkpoints rotate the two halves of each head (``rotate_half``);
Nano's engine rotates adjacent pairs, so the rows of ``q_proj`` / ``k_proj`` (and their biases) are
reordered at import: row ``j`` of a head goes to ``2j`` and row ``j + head_dim/2`` to ``2j + 1``. That
is an exact permutation: attention scores, and so the logits, are unchanged.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from pathlib import Path

import numpy as np

from nano import _native

__all__ = ["SUPPORTED_ARCHITECTURES", "import_hf", "read_safetensors"]

SUPPORTED_ARCHITECTURES = ("Qwen2ForCausalLM", "LlamaForCausalLM")

# safetensors dtype -> (numpy dtype, bytes per element); BF16 is widened by hand.
_ST_DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2)}
_MAX_HEADER = 100 << 20


class _Folder:
    """Paths and error messages of one model folder."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: not a directory (expected a Hugging Face model folder)")

    def file(self, name: str, required: bool = True) -> Path | None:
        p = self.path / name
        if not p.is_file():
            if required:
                raise FileNotFoundError(f"{p}: missing (a Hugging Face model folder needs {name})")
            return None
        return p

    def json(self, name: str, required: bool = True) -> dict | None:
        p = self.file(name, required)
        if p is None:
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a JSON object")
        return data


def read_safetensors(path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as float32 arrays. The header, every offset and every
    shape are checked against the file: a truncated or inconsistent file is refused naming the tensor."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ValueError(f"{path}: truncated safetensors file ({size} bytes, the header length needs 8)")
        n = int.from_bytes(f.read(8), "little")
        if n > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path}: truncated safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: safetensors header is not valid JSON: {e}") from None
        if not isinstance(header, dict):
            raise ValueError(f"{path}: safetensors header is not a JSON object")
        data_len = size - 8 - n
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else b""
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise ValueError(f"{where}: entry lacks dtype, shape or data_offsets")
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{where}: dtype {info['dtype']} is not supported (F32, F16, BF16)")
        np_dtype, width = _ST_DTYPES[info["dtype"]]
        shape, offsets = info["shape"], info["data_offsets"]
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)):
            raise ValueError(f"{where}: bad shape {shape!r} or data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise ValueError(f"{where}: bad data_offsets {offsets}")
        if end > data_len:
            raise ValueError(f"{where}: truncated file: the tensor ends at byte {end} of the data, "
                             f"which holds {data_len}")
        if end - begin != math.prod(shape) * width:
            raise ValueError(f"{where}: {end - begin} bytes do not hold a {info['dtype']} tensor of shape {shape}")
        raw = np.frombuffer(buf, dtype=np_dtype, count=math.prod(shape), offset=8 + n + begin)
        if info["dtype"] == "BF16":
            values = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            values = raw.astype(np.float32)
        out[name] = values.reshape(shape)
    return out


def _weights(folder: _Folder) -> dict[str, np.ndarray]:
    index = folder.json("model.safetensors.index.json", required=False)
    if index is None:
        single = folder.file("model.safetensors", required=False)
        if single is None:
            raise FileNotFoundError(f"{folder.path}: no model.safetensors or model.safetensors.index.json "
                                    "(only safetensors weights are read)")
        return read_safetensors(single)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        raise ValueError(f"{folder.path / 'model.safetensors.index.json'}: field weight_map is missing")
    out: dict[str, np.ndarray] = {}
    for shard in sorted(set(weight_map.values())):
        out.update(read_safetensors(folder.file(str(shard))))
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise ValueError(f"{folder.path}: tensor {missing[0]!r} is listed in model.safetensors.index.json "
                         "but in none of its shards")
    return out


def _field(cfg: dict, name: str, kind=int, default=None, where="config.json"):
    v = cfg.get(name, default)
    if v is None:
        raise ValueError(f"{where}: field {name} is missing")
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise ValueError(f"{where}: field {name} = {v!r} is not a {kind.__name__}")
    return v


def _rope(cfg: dict, where: str) -> tuple[float, dict | None]:
    """(theta, llama3 scaling or None) from ``rope_theta`` / ``rope_scaling`` (transformers 4) or
    ``rope_parameters`` (transformers 5)."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or (params if params.get("rope_type", "default") != "default" else None)
    theta = cfg.get("rope_theta", params.get("rope_theta", 10000.0))
    if not isinstance(theta, (int, float)) or isinstance(theta, bool):
        raise ValueError(f"{where}: field rope_theta = {theta!r} is not a number")
    if not scaling:
        return float(theta), None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return float(theta), None
    if kind != "llama3":
        raise ValueError(f"{where}: field rope_scaling has rope_type {kind!r}; only llama3 scaling is supported")
    s = {k: _field(scaling, k, float, where=f"{where} rope_scaling")
         for k in ("factor", "low_freq_factor", "high_freq_factor")}
    s["original_max_position_embeddings"] = _field(scaling, "original_max_position_embeddings",
                                                   where=f"{where} rope_scaling")
    return float(theta), s


def _config(cfg: dict, where: str) -> tuple[str, dict]:
    archs = cfg.get("architectures") or [cfg.get("model_type", "?")]
    arch = archs[0] if isinstance(archs, list) and archs else archs
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{where}: architecture {arch!r} (field architectures) is not supported; "
                         f"Nano runs {', '.join(SUPPORTED_ARCHITECTURES)}")
    n_embd, n_head = _field(cfg, "hidden_size"), _field(cfg, "num_attention_heads")
    head_dim = cfg.get("head_dim")
    if head_dim is not None and head_dim * n_head != n_embd:
        raise ValueError(f"{where}: field head_dim = {head_dim} differs from hidden_size / num_attention_heads "
                         f"= {n_embd} / {n_head}; Nano needs them equal")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"{where}: field hidden_act = {act!r} is not supported (only silu)")
    if cfg.get("mlp_bias"):
        raise ValueError(f"{where}: field mlp_bias = true is not supported (biases on q/k/v only)")
    if cfg.get("use_sliding_window"):
        raise ValueError(f"{where}: field use_sliding_window = true is not supported (full attention only)")
    if arch == "LlamaForCausalLM" and cfg.get("attention_bias"):
        raise ValueError(f"{where}: field attention_bias = true is not supported (it adds an o_proj bias)")
    theta, scaling = _rope(cfg, where)
    qkv_bias = arch == "Qwen2ForCausalLM"  # Qwen2 always has q/k/v biases, and only those
    out = {
        "block_size": _field(cfg, "max_position_embeddings"),
        "vocab_size": _field(cfg, "vocab_size"),
        "n_layer": _field(cfg, "num_hidden_layers"),
        "n_embd": n_embd,
        "n_head": n_head,
        "n_kv_head": _field(cfg, "num_key_value_heads", default=n_head),
        "n_hidden": _field(cfg, "intermediate_size"),
        "norm_eps": _field(cfg, "rms_norm_eps", float, default=1e-6),
        "rope_theta": theta,
        "use_rope": True,
        "is_causal": True,
        "tied_head": bool(cfg.get("tie_word_embeddings", False)),
        "qkv_bias": qkv_bias,
    }
    if scaling:
        out["rope_scaling"] = scaling
    return arch, out


def _halves_to_pairs(w: np.ndarray, heads: int) -> np.ndarray:
    """Reorders the rows of a q/k projection (or bias) from HF's half-split RoPE layout to adjacent pairs."""
    rest = w.shape[1:]
    hd = w.shape[0] // heads
    return np.ascontiguousarray(w.reshape(heads, 2, hd // 2, *rest).swapaxes(1, 2).reshape(w.shape))


def _tensors(weights: dict[str, np.ndarray], c: dict, where: str) -> dict[str, np.ndarray]:
    """HF names -> Nano names, q/k rows reordered, every shape checked (the Rust writer checks the set)."""
    hd = c["n_embd"] // c["n_head"]
    q, kv, d, h = c["n_head"] * hd, c["n_kv_head"] * hd, c["n_embd"], c["n_hidden"]
    used: set[str] = set()

    def take(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in weights:
            raise ValueError(f"{where}: tensor {name!r} is missing")
        w = weights[name]
        if tuple(w.shape) != shape:
            raise ValueError(f"{where}: tensor {name!r} has shape {list(w.shape)}, config.json implies {list(shape)}")
        used.add(name)
        return w

    out = {"tok_embeddings.weight": take("model.embed_tokens.weight", (c["vocab_size"], d)),
           "norm.weight": take("model.norm.weight", (d,))}
    for i in range(c["n_layer"]):
        p, n = f"model.layers.{i}.", f"layers.{i}."
        out[n + "attention_norm.weight"] = take(p + "input_layernorm.weight", (d,))
        out[n + "ffn_norm.weight"] = take(p + "post_attention_layernorm.weight", (d,))
        out[n + "attention.wq.weight"] = _halves_to_pairs(take(p + "self_attn.q_proj.weight", (q, d)), c["n_head"])
        out[n + "attention.wk.weight"] = _halves_to_pairs(take(p + "self_attn.k_proj.weight", (kv, d)),
                                                          c["n_kv_head"])
        out[n + "attention.wv.weight"] = take(p + "self_attn.v_proj.weight", (kv, d))
        out[n + "attention.wo.weight"] = take(p + "self_attn.o_proj.weight", (d, q))
        if c["qkv_bias"]:
            out[n + "attention.wq.bias"] = _halves_to_pairs(take(p + "self_attn.q_proj.bias", (q,)), c["n_head"])
            out[n + "attention.wk.bias"] = _halves_to_pairs(take(p + "self_attn.k_proj.bias", (kv,)), c["n_kv_head"])
            out[n + "attention.wv.bias"] = take(p + "self_attn.v_proj.bias", (kv,))
        out[n + "feed_forward.w1.weight"] = take(p + "mlp.gate_proj.weight", (h, d))
        out[n + "feed_forward.w3.weight"] = take(p + "mlp.up_proj.weight", (h, d))
        out[n + "feed_forward.w2.weight"] = take(p + "mlp.down_proj.weight", (d, h))
    if not c["tied_head"]:
        out["output.weight"] = take("lm_head.weight", (c["vocab_size"], d))
    elif "lm_head.weight" in weights:
        used.add("lm_head.weight")  # a tied head saved anyway: the embedding is used
    unused = sorted(k for k in set(weights) - used if not k.endswith("rotary_emb.inv_freq"))
    if unused:
        raise ValueError(f"{where}: tensor {unused[0]!r} is not part of a {c['n_layer']}-layer model of this "
                         "architecture (unsupported feature?)")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _token_name(v) -> str | None:
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def _bos_from_post_processor(tok: dict, bos: str | None) -> bool:
    """Whether ``tokenizer.json``'s post-processor puts ``bos`` before a single sequence."""
    def templates(pp):
        if not isinstance(pp, dict):
            return
        if pp.get("type") == "Sequence":
            for inner in pp.get("processors") or []:
                yield from templates(inner)
        elif pp.get("type") == "TemplateProcessing":
            yield pp.get("single") or []
    for single in templates(tok.get("post_processor")):
        first = single[0] if single else None
        if isinstance(first, dict) and "SpecialToken" in first:
            return first["SpecialToken"].get("id") == bos
    return False


def _ids(v, where: str) -> list[int]:
    ids = v if isinstance(v, list) else [] if v is None else [v]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"{where}: field eos_token_id = {v!r} is not a token id or a list of them")
    return ids


def _tokenizer(folder: _Folder, cfg: dict) -> dict:
    tok_path = folder.file("tokenizer.json")
    try:
        text = tok_path.read_text(encoding="utf-8")
        tok = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{tok_path}: not valid JSON: {e}") from None
    tc = folder.json("tokenizer_config.json", required=False) or {}
    template = tc.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    jinja = folder.file("chat_template.jinja", required=False)
    if jinja is not None:  # transformers >= 4.47 saves the template beside the config, and prefers it
        template = jinja.read_text(encoding="utf-8")
    if template is not None and not isinstance(template, str):
        raise ValueError(f"{folder.path / 'tokenizer_config.json'}: field chat_template is not a string")
    bos = _token_name(tc.get("bos_token"))
    add_bos = tc.get("add_bos_token")
    if not isinstance(add_bos, bool):
        add_bos = _bos_from_post_processor(tok, bos)
    gen = folder.json("generation_config.json", required=False) or {}
    if "eos_token_id" in gen:
        stop = _ids(gen["eos_token_id"], str(folder.path / "generation_config.json"))
    else:
        stop = _ids(cfg.get("eos_token_id"), str(folder.path / "config.json"))
    return {"json": text, "bos_token": bos, "eos_token": _token_name(tc.get("eos_token")),
            "pad_token": _token_name(tc.get("pad_token")), "unk_token": _token_name(tc.get("unk_token")),
            "add_bos_token": add_bos, "chat_template": template, "stop_ids": stop}


def import_hf(folder, out, dtype: str = "f32") -> Path:
    """Writes the model of a Hugging Face folder to ``out`` (a Nano 2026.2 file, matrices in ``dtype``)."""
    from nano.export import DTYPES, _prepare_out

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    f = _Folder(folder)
    where = str(f.path / "config.json")
    hf_config = f.json("config.json")
    _, config = _config(hf_config, where)
    tokenizer = _tokenizer(f, hf_config)
    tensors = _tensors(_weights(f), config, str(f.path))
    out = _prepare_out(out, None)
    _native.write_hf_model(str(out), json.dumps(config), json.dumps(tokenizer), tensors, dtype)
    return out
