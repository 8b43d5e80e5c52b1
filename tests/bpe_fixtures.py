"""Fixtures for the BPE tokenizer tests and benchmark: deterministic mixed text, and vocabularies
trained with HF ``tokenizers``' trainer in each family's configuration (nothing downloaded).

Families, as their published ``tokenizer.json`` files declare them:

- ``gpt2``: ByteLevel pre-tokenizer with its own regex;
- ``llama3``: Split(Llama 3 regex) + ByteLevel(use_regex=false), ``ignore_merges``;
- ``qwen2``: NFC normalizer, Split(Qwen2 regex) + ByteLevel(use_regex=false);
- ``sentencepiece``: TinyLlama's form — Prepend("▁") + Replace(" " → "▁") normalizer, no
  pre-tokenizer, BPE with byte fallback to ``<0x00>``..``<0xFF>`` (ids 3..258) and fused ``<unk>``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

SHARED_DATA = Path(os.environ.get("NANO_SHARED_DATA", Path(__file__).resolve().parent.parent.parent
                                  / "shared" / "data"))
CORPORA = ["pretrain_psycho.txt", "pretrain_amateur_radio.txt", "pretrain_chinese_classic.txt",
           "exam_amateur_radio.txt", "sft_amateur_radio.jsonl"]

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
FAMILIES = ("gpt2", "llama3", "qwen2", "sentencepiece")
SPECIALS = {
    "gpt2": ["<|endoftext|>"],
    "llama3": ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "sentencepiece": ["<unk>", "<s>", "</s>"],
}
#: A non-special added token, matched in every mode.
PLAIN_ADDED = "[[page]]"

_WORDS = ("the of and to in is was it you that he she they we I'm don't we'll You'RE THEY'VE it'S "
          "I'D 'tis rock'n'roll naïve café Straße Ελληνικά русский язык עברית العربية हिन्दी ภาษาไทย "
          "日本語の文章 한국어 문장 Tiếng Việt ſ 'ſ x² ½ ⅷ ١٢٣ ߁").split()
_CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "if __name__ == '__main__':\n        main()\r\n",
    "const s = `${a}+${b}`;\t\t// tabs\n\n\n",
    "    \n  \t \n",
    "x=[1,2,3];y={'a':1}\n",
]
_EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇨🇳", "❤️", "🧑🏿‍🚀", "⌚", "🀄"]
_ODD = ["\u0301", "\u0308\u0301", "\ufffd", "\ue000", "\uf8ff", "\U000f0000", "\u200b", "\u200d",
        "\ufeff", "\u00a0", "\u3000", "\u2028", "\u0085", "\x0b", "\x0c", "\r", "\x00", "\x7f",
        "e\u0301", "A\u030a", "\u1100\u1161", "\U0001d400", "\u2160", "\u00ad"]
_SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "  \t ", "\u3000", " \u00a0 "]


def _synthetic(rng: random.Random, n: int) -> str:
    """About ``n`` characters of English/Chinese/code/emoji/digits/whitespace/odd Unicode."""
    out: list[str] = []
    size = 0
    while size < n:
        k = rng.random()
        if k < 0.25:
            s = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 12)))
        elif k < 0.40:
            s = "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 30)))
            s += rng.choice("，。、；：！？“”《》 \n")
        elif k < 0.50:
            s = rng.choice(_CODE)
        elif k < 0.58:
            s = "".join(rng.choice(_EMOJI) for _ in range(rng.randint(1, 4)))
        elif k < 0.68:
            s = str(rng.randint(0, 10 ** rng.randint(1, 12))) + rng.choice([" ", ".", ",", "", "\n"])
        elif k < 0.80:
            s = rng.choice(_SPACES) * rng.randint(1, 4)
        elif k < 0.92:
            s = "".join(rng.choice(_ODD) for _ in range(rng.randint(1, 3)))
        elif k < 0.96:
            s = rng.choice(SPECIALS[rng.choice(FAMILIES)]) + rng.choice(["", " ", "\n"])
        elif k < 0.98:
            s = PLAIN_ADDED
        else:
            # Printable characters from anywhere in the BMP's long-assigned blocks.
            s = "".join(chr(rng.randint(0x00A0, 0x2FFF)) for _ in range(rng.randint(1, 8)))
        out.append(s)
        size += len(s)
    return "".join(out)


def corpus_text() -> str:
    """The shared corpora that are present, concatenated ('' when none is)."""
    parts = []
    for name in CORPORA:
        p = SHARED_DATA / name
        if p.exists():
            parts.append(p.read_text(encoding="utf-8"))
    return "\n".join(parts)


def mixed_documents(total_bytes: int, seed: int = 1234) -> list[str]:
    """Deterministic documents of mixed text, about ``total_bytes`` UTF-8 bytes together: slices
    of the shared corpora (when present) interleaved with synthetic pieces, 1 B to 64 KB each."""
    rng = random.Random(seed)
    corpus = corpus_text()
    docs: list[str] = []
    size = 0
    while size < total_bytes:
        n = int(2 ** rng.uniform(0, 16))
        if corpus and rng.random() < 0.5:
            start = rng.randrange(0, max(1, len(corpus) - n))
            doc = corpus[start:start + n]
            if rng.random() < 0.5:
                doc += _synthetic(rng, rng.randint(1, 200))
        else:
            doc = _synthetic(rng, n)
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs


def _trained(family: str, texts: list[str], vocab_size: int):
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    if family == "sentencepiece":
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        # A small alphabet: rarer characters must fall back to bytes.
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS[family],
                                      limit_alphabet=600, show_progress=False)
        tok.train_from_iterator(texts, trainer)
        return tok
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=family == "gpt2")
    tok = Tokenizer(models.BPE(ignore_merges=family == "llama3"))
    if family == "gpt2":
        tok.pre_tokenizer = byte_level
    else:
        regex = LLAMA3_REGEX if family == "llama3" else QWEN2_REGEX
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(regex), behavior="isolated"), byte_level])
    if family == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS[family],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(PLAIN_ADDED, normalized=False)])
    return tok


def _as_tinyllama(data: dict) -> dict:
    """A trained Metaspace BPE rewritten in TinyLlama's tokenizer.json form: <unk> <s> </s>, the
    256 byte tokens, then the learned pieces; spaces handled by the normalizer."""
    model = data["model"]
    learned = sorted(((t, i) for t, i in model["vocab"].items() if t not in SPECIALS["sentencepiece"]),
                     key=lambda ti: ti[1])
    vocab = {t: i for i, t in enumerate(SPECIALS["sentencepiece"])}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in learned:
        vocab.setdefault(t, len(vocab))
    model["vocab"] = vocab
    data["added_tokens"] = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for i, t in enumerate(SPECIALS["sentencepiece"])
    ]
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    data["pre_tokenizer"] = None
    data["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return data


def build_fixture(family: str, out_dir: Path, vocab_size: int = 4000) -> Path:
    """Trains ``family``'s vocabulary on the shared corpora plus synthetic text and writes
    ``out_dir/tokenizer.json`` and ``tokenizer_config.json``; returns ``out_dir``."""
    texts = mixed_documents(250_000, seed=99)
    tok = _trained(family, texts, vocab_size)
    data = json.loads(tok.to_str())
    if family == "sentencepiece":
        data = _as_tinyllama(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    specials = SPECIALS[family]
    config = {"bos_token": specials[0] if family != "sentencepiece" else "<s>",
              "eos_token": specials[-1] if family != "sentencepiece" else "</s>"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out_dir
