"""Nano model → a Hugging Face model directory (``LlamaForCausalLM``), used by
``python -m nano.export OUT_DIR --format hf``.

Files: ``model.safetensors`` (float32, written here: the format is an 8-byte header length, a JSON
header of name → dtype/shape/byte range, then the raw little-endian data), ``config.json``,
``generation_config.json``, ``tokenizer.json`` and ``tokenizer_config.json``.

**RoPE layout.** Nano rotates interleaved pairs (2i, 2i+1) of each head; ``transformers``' Llama
rotates (i, i + d/2) ("rotate_half"). Permuting the rows of ``wq`` and ``wk`` within each head —
even rows first, then odd rows — turns one into the other exactly: attention scores only see q·k,
and both are permuted alike.

**Tokenizer.** Nano's greedy longest match is not BPE, but the ``tokenizers`` pipeline can state it:
a ``Split`` pre-tokenizer whose regex is the vocabulary's trie (at each node: go deeper if some token
continues, else stop at this node's token — Oniguruma's ordered, backtracking alternation makes that
the longest match at each position) isolates every token Nano would emit; the text between matches is
characters that start no token. The model is ``BPE`` with no merges, ``ignore_merges`` (a piece that
is a vocabulary entry is that entry) and ``byte_fallback`` (any other character becomes its ``<0xHH>``
byte tokens, Nano's spelling), so each piece gives the ids Nano gives. Special tokens are added tokens:
``transformers`` matches them in text unless ``split_special_tokens=True`` (Nano's default,
``allow_special=False``).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np

import nano.tokenizer as special
from nano.export_gguf import CHAT_TEMPLATE, check_exportable

__all__ = ["hf_state_dict", "hf_tokenizer_json", "write_hf", "write_safetensors", "half_split_rows"]

_LAYER_NAMES = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
}


def half_split_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of a q/k projection reordered per head from interleaved pairs to halves:
    new row j = old row 2j, new row d/2 + j = old row 2j + 1."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.reshape(n_heads, hd // 2, 2, in_dim).transpose(0, 2, 1, 3).reshape(out_dim, in_dim)


def hf_state_dict(config: dict, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {"model.embed_tokens.weight": tensors["tok_embeddings.weight"], "model.norm.weight": tensors["norm.weight"]}
    for i in range(config["n_layer"]):
        for nano, hf in _LAYER_NAMES.items():
            w = tensors[f"layers.{i}.{nano}"]
            if nano == "attention.wq.weight":
                w = half_split_rows(w, config["n_head"])
            elif nano == "attention.wk.weight":
                w = half_split_rows(w, config["n_kv_head"])
            out[f"model.layers.{i}.{hf}"] = w
    return out


def write_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """float32 tensors as a .safetensors file (written to a temporary name, then renamed)."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    arrays = []
    for name, w in tensors.items():
        a = np.ascontiguousarray(w, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # keeps the data 8-byte aligned; the format allows trailing spaces
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for a in arrays:
                f.write(a.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_FANOUT = 32


def _regex_escape(c: str) -> str:
    return c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):X}}}"


def _trie_regex(tokens: list[str]) -> str:
    """An Oniguruma regex matching, at any position, the longest of `tokens` that starts there."""
    trie: dict = {}
    end = object()
    for t in tokens:
        node = trie
        for c in t:
            node = node.setdefault(c, {})
        node[end] = True

    def alternatives(node: dict) -> str:
        # Each branch starts with a different character, so at most one can proceed; going deeper
        # is tried before stopping, and stopping is allowed only where a token ends.
        children = sorted((c, n) for c, n in node.items() if c is not end)
        branches = [_regex_escape(c) + alternatives(child) for c, child in children]
        if not branches:
            return ""
        if len(branches) > _FANOUT:
            # Oniguruma tries alternatives one by one. With thousands of first characters, chunks
            # guarded by a lookahead for their character range let a position skip all but one chunk
            # (the chunks' ranges are disjoint because the branches are sorted).
            size = max(_FANOUT, int(len(branches) ** 0.5))
            chunks = []
            for i in range(0, len(branches), size):
                lo, hi = children[i][0], children[min(i + size, len(children)) - 1][0]
                chunks.append(f"(?=[{_regex_escape(lo)}-{_regex_escape(hi)}])(?:" + "|".join(branches[i:i + size]) + ")")
            branches = chunks
        group = "(?:" + "|".join(branches) + ")"
        return group + "?" if end in node else group

    return alternatives(trie)


def hf_tokenizer_json(tokenizer) -> dict:
    """The `tokenizers` JSON document that tokenizes as Nano (see the module docstring)."""
    tokens = tokenizer.tokens()
    matchable = [t for i, t in enumerate(tokens) if not tokenizer.is_special(i) and tokenizer.byte_value(i) is None]
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for i, t in enumerate(tokens) if tokenizer.is_special(i)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": _trie_regex(matchable)},
            "behavior": "Isolated",
            "invert": False,
        },
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": special.UNKNOWN,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": tokenizer.has_byte_fallback,
            "ignore_merges": True,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [],
        },
    }


def _hf_config(config: dict, tokenizer) -> dict:
    ids = {k: tokenizer.token_to_id(t) for k, t in
           (("bos", special.BOS), ("eos", special.EOS), ("pad", special.PADDING))}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config["vocab_size"],
        "hidden_size": config["n_embd"],
        "intermediate_size": config["n_hidden"],
        "num_hidden_layers": config["n_layer"],
        "num_attention_heads": config["n_head"],
        "num_key_value_heads": config["n_kv_head"],
        "head_dim": config["n_embd"] // config["n_head"],
        "hidden_act": "silu",
        "max_position_embeddings": config["block_size"],
        "rms_norm_eps": float(config.get("norm_eps", 1e-5)),
        "rope_theta": float(config.get("rope_theta", 10000.0)),
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "torch_dtype": "float32",
    }


def write_hf(out_dir, config: dict, tokenizer, tensors: dict[str, np.ndarray]) -> Path:
    """Writes the Hugging Face directory; it is assembled next to `out_dir` and renamed into place,
    so an interrupted export leaves no half-written directory."""
    check_exportable(config, tensors)
    if tokenizer.vocab_size != config["vocab_size"]:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model {config['vocab_size']}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_safetensors(tmp / "model.safetensors", hf_state_dict(config, tensors), {"format": "pt"})
        hf_config = _hf_config(config, tokenizer)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        gen = {"bos_token_id": hf_config["bos_token_id"], "eos_token_id": hf_config["eos_token_id"],
               "pad_token_id": hf_config["pad_token_id"], "do_sample": False}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")
        (tmp / "tokenizer.json").write_text(json.dumps(hf_tokenizer_json(tokenizer), ensure_ascii=False),
                                            encoding="utf-8")
        specials = {k: t for k, t in (("bos_token", special.BOS), ("eos_token", special.EOS),
                                      ("unk_token", special.UNKNOWN), ("pad_token", special.PADDING))
                    if tokenizer.token_to_id(t) is not None}
        tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False,
                      "add_eos_token": False, "clean_up_tokenization_spaces": False,
                      "model_max_length": config["block_size"], "chat_template": CHAT_TEMPLATE, **specials}
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
