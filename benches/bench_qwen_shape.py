"""Decode / prefill speed of Nano's engine on a model of Qwen2.5-0.5B's shape (random weights).

Writes a Nano 2026.2 file of Qwen2.5-0.5B-Instruct's architecture (24 layers, hidden 896, 14 query heads
over 2 KV heads, FFN 4864, vocabulary 151936, q/k/v biases, RoPE theta 1e6, tied head) with random weights
and a small byte-level tokenizer (the embedding is padded to the full vocabulary, as real checkpoints pad
theirs), once per dtype, then runs `nano-infer bench` on each: prefill tok/s of a --prompt-tokens prompt,
decode tok/s, bytes per token and the fraction of the measured memory bandwidth that decode reaches.
Nothing is downloaded; the same files are what `python -m nano.export --from-hf` makes of the real model.

    python3 benches/bench_qwen_shape.py --dtypes f16,q8_0,q4_0 --threads 1,2 --prompt-tokens 512
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from nano import _native

SHAPE = {"block_size": 32768, "vocab_size": 151936, "n_layer": 24, "n_embd": 896, "n_head": 14, "n_kv_head": 2,
         "n_hidden": 4864, "norm_eps": 1e-6, "rope_theta": 1000000.0, "use_rope": True, "is_causal": True,
         "tied_head": True, "qkv_bias": True}
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _byte_chars() -> list[str]:
    """GPT-2's printable character for each byte (the byte-level alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def tokenizer_section() -> str:
    """A Qwen2-style byte-level tokenizer of the 256 byte tokens plus ChatML's special tokens."""
    vocab = {c: i for i, c in enumerate(_byte_chars())}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(specials)]
    tok = {"version": "1.0", "added_tokens": added, "normalizer": {"type": "NFC"},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
           "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "byte_fallback": False,
                     "vocab": vocab, "merges": []}}
    return json.dumps({"json": json.dumps(tok), "bos_token": None, "eos_token": "<|im_end|>", "pad_token": None,
                       "unk_token": None, "add_bos_token": False, "chat_template": CHATML, "stop_ids": [258]})


def random_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights in the file's names and shapes (std 0.02 matrices, norms near 1, small biases)."""
    rng = np.random.default_rng(seed)
    c = SHAPE
    d, hd = c["n_embd"], c["n_embd"] // c["n_head"]
    q, kv, h = c["n_head"] * hd, c["n_kv_head"] * hd, c["n_hidden"]

    def mat(rows: int, cols: int) -> np.ndarray:
        return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(0.02)

    def vec(n: int, base: float) -> np.ndarray:
        return base + rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)

    out = {"tok_embeddings.weight": mat(c["vocab_size"], d), "norm.weight": vec(d, 1.0)}
    for i in range(c["n_layer"]):
        p = f"layers.{i}."
        out |= {p + "attention_norm.weight": vec(d, 1.0), p + "ffn_norm.weight": vec(d, 1.0),
                p + "attention.wq.weight": mat(q, d), p + "attention.wk.weight": mat(kv, d),
                p + "attention.wv.weight": mat(kv, d), p + "attention.wo.weight": mat(d, q),
                p + "attention.wq.bias": vec(q, 0.0), p + "attention.wk.bias": vec(kv, 0.0),
                p + "attention.wv.bias": vec(kv, 0.0), p + "feed_forward.w1.weight": mat(h, d),
                p + "feed_forward.w3.weight": mat(h, d), p + "feed_forward.w2.weight": mat(d, h)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtypes", default="f16,q8_0,q4_0")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--nano-infer", default="target/release/nano-infer")
    p.add_argument("--dir", default=None, help="where the model files go (default: a temporary directory)")
    a = p.parse_args(argv)
    if not Path(a.nano_infer).exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "nano-infer"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(a.dir or tmp)
        tensors = random_tensors()
        files = {}
        for dtype in a.dtypes.split(","):
            files[dtype] = folder / f"qwen2.5-0.5b-shape-{dtype}.bin"
            _native.write_hf_model(str(files[dtype]), json.dumps(SHAPE), tokenizer_section(), tensors, dtype)
        del tensors
        for dtype, path in files.items():
            print(f"== {dtype}: {path.stat().st_size / 1e6:.0f} MB", flush=True)
            r = subprocess.run([a.nano_infer, "bench", str(path), "--threads", a.threads,
                                "--prompt-tokens", str(a.prompt_tokens), "--decode-tokens", str(a.decode_tokens),
                                "--repeat", str(a.repeat)], text=True, capture_output=True)
            print(r.stdout + r.stderr, end="", flush=True)
            if r.returncode:
                return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
