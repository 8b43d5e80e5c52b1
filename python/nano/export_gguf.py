"""Nano model → GGUF for llama.cpp (architecture ``llama``), used by ``python -m nano.export OUT.gguf``.

What llama.cpp gets:

* **Weights** under llama.cpp's names (``token_embd``, ``blk.N.attn_q`` ...), ``[out, in]`` matrices as
  ggml ``[in, out]``. Nano's RoPE rotates interleaved pairs (2i, 2i+1), which is what the ``llama``
  architecture's rotation (``LLAMA_ROPE_TYPE_NORM``) does, so q and k are written unpermuted (GGUFs
  converted from Hugging Face are permuted back from HF's half-split layout to this one). No
  ``output.weight``: llama.cpp then uses the token embedding as the head, as Nano does.
* **Quantization**: ggml's Q8_0 / Q4_0 blocks hold the same codes as Nano's, with an f16 scale where
  Nano keeps f32; the scale's rounding moves each weight by at most 2^-11 of its block's scale step
  times its code, so quantized GGUFs are not bit-identical to Nano's quantized files (see
  docs/interop.md).
* **Tokenizer**: llama.cpp's ``rwkv`` vocabulary type: a greedy longest match over a byte trie of
  every token, one byte to ``<|unknown|>`` when nothing matches. With Nano's 256 byte tokens that is
  exactly Nano's rule (proof in docs/interop.md). Token text uses RWKV's escapes (``\\xhh`` for a
  byte token, ``\\\\`` for a backslash), which llama.cpp undoes for matching and for output.
* **Metadata**: special-token ids, no BOS added, and Nano's chat format as a Jinja chat template.
"""

from __future__ import annotations

import numpy as np

import nano.tokenizer as special
from nano.gguf import encode_tensor, write_gguf

__all__ = ["CHAT_TEMPLATE", "check_exportable", "gguf_tokens", "llama_names", "write_llama_gguf"]

# <|instruct_mark|> question <|response_mark|> answer <|eos|>, the format of Nano's SFT data, as a Jinja
# chat template (its owner: nano_tokenizer::special, also behind nano.Engine.chat).
CHAT_TEMPLATE: str = special.CHAT_TEMPLATE

FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}  # llama_ftype of an all-<type> model

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6

_LAYER_NAMES = {
    "attention_norm.weight": "attn_norm.weight",
    "attention.wq.weight": "attn_q.weight",
    "attention.wk.weight": "attn_k.weight",
    "attention.wv.weight": "attn_v.weight",
    "attention.wo.weight": "attn_output.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w2.weight": "ffn_down.weight",
    "feed_forward.w3.weight": "ffn_up.weight",
}


def check_exportable(config: dict, tensors: dict) -> None:
    """Refuses, with the reason, models the llama architecture cannot express."""
    if not config.get("use_rope", True):
        raise ValueError("learned position embeddings (use_rope false) have no llama equivalent")
    if not config.get("is_causal", True):
        raise ValueError("a non-causal model has no llama equivalent")
    if config.get("bias", False):
        raise ValueError("linear biases have no place in the llama architecture")
    if "output.weight" in tensors and not np.array_equal(tensors["output.weight"], tensors["tok_embeddings.weight"]):
        raise ValueError("an untied output head is not exported (Nano's models tie it to the embedding)")


def llama_names(n_layer: int) -> dict[str, str]:
    """Nano state_dict name → llama.cpp GGUF tensor name."""
    names = {"tok_embeddings.weight": "token_embd.weight", "norm.weight": "output_norm.weight"}
    for i in range(n_layer):
        for nano, gguf in _LAYER_NAMES.items():
            names[f"layers.{i}.{nano}"] = f"blk.{i}.{gguf}"
    return names


def _rwkv_escape(token: str) -> str:
    return token.replace("\\", "\\\\")


def gguf_tokens(tokenizer) -> tuple[list[str], list[int]]:
    """Token texts (RWKV-escaped) and GGUF token types, by id.

    Refuses vocabularies on which llama.cpp's byte trie would not tokenize as Nano: one without
    byte tokens (llama.cpp would turn each byte, not each character, of an unknown character into
    ``<|unknown|>``), and one where a byte token's id is above a one-byte ordinary token of the same
    byte (llama.cpp's trie keeps the later id for equal bytes).
    """
    if not tokenizer.has_byte_fallback:
        raise ValueError(
            "the vocabulary has no byte tokens: llama.cpp cannot reproduce <|unknown|> per character; "
            "build the vocabulary with --byte-fallback"
        )
    texts, types = [], []
    for i, tok in enumerate(tokenizer.tokens()):
        byte = tokenizer.byte_value(i)
        if byte is not None:
            texts.append(f"\\x{byte:02x}")
            types.append(BYTE)
            same = tokenizer.token_to_id(chr(byte)) if byte < 0x80 else None
            if same is not None and same < i:
                raise ValueError(
                    f"byte token {tok} (id {i}) comes after the token {chr(byte)!r} (id {same}); llama.cpp's "
                    "byte trie would match the byte token instead"
                )
        else:
            texts.append(_rwkv_escape(tok))
            types.append(UNKNOWN if tok == special.UNKNOWN else CONTROL if tokenizer.is_special(i) else NORMAL)
    return texts, types


def _special_ids(tokenizer) -> dict[str, int]:
    keys = {special.BOS: "bos", special.EOS: "eos", special.UNKNOWN: "unknown", special.PADDING: "padding"}
    out = {}
    for text, key in keys.items():
        i = tokenizer.token_to_id(text)
        if i is not None and tokenizer.is_special(i):
            out[f"tokenizer.ggml.{key}_token_id"] = i
    return out


def write_llama_gguf(out, config: dict, tokenizer, tensors: dict[str, np.ndarray], dtype: str = "f32",
                     name: str = "nano") -> None:
    """Writes a Nano model (config dict, Tokenizer, float32 state_dict arrays) as a llama GGUF.

    Matrices get `dtype`; norms stay f32, and so does any matrix whose rows are not a multiple of 32
    values when a block type is asked for (llama.cpp would refuse it).
    """
    if dtype not in FILE_TYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(FILE_TYPES)}")
    check_exportable(config, tensors)
    if tokenizer.vocab_size != config["vocab_size"]:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model {config['vocab_size']}")
    token_texts, token_types = gguf_tokens(tokenizer)
    names = llama_names(config["n_layer"])
    missing = set(names) - set(tensors)
    extra = set(tensors) - set(names) - {"output.weight"}
    if missing or extra:
        raise ValueError(f"tensors do not match the config: missing {sorted(missing)}, unexpected {sorted(extra)}")
    head_dim = config["n_embd"] // config["n_head"]
    metadata = {
        "general.architecture": "llama",
        "general.name": name,
        "general.file_type": FILE_TYPES[dtype],
        "general.alignment": 32,
        "llama.vocab_size": config["vocab_size"],
        "llama.context_length": config["block_size"],
        "llama.embedding_length": config["n_embd"],
        "llama.block_count": config["n_layer"],
        "llama.feed_forward_length": config["n_hidden"],
        "llama.attention.head_count": config["n_head"],
        "llama.attention.head_count_kv": config["n_kv_head"],
        "llama.attention.layer_norm_rms_epsilon": float(config.get("norm_eps", 1e-5)),
        "llama.rope.freq_base": float(config.get("rope_theta", 10000.0)),
        "llama.rope.dimension_count": head_dim,
        "tokenizer.ggml.model": "rwkv",
        "tokenizer.ggml.tokens": token_texts,
        "tokenizer.ggml.token_type": token_types,
        **_special_ids(tokenizer),
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.chat_template": CHAT_TEMPLATE,
    }
    out_tensors = []
    for nano_name, gguf_name in names.items():
        w = tensors[nano_name]
        t = dtype if w.ndim == 2 and (dtype in ("f32", "f16") or w.shape[1] % 32 == 0) else "f32"
        out_tensors.append(encode_tensor(gguf_name, w, t))
    write_gguf(out, metadata, out_tensors)
