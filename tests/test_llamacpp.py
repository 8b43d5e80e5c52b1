"""Nano's GGUF export run by llama.cpp itself (tools built by scripts/build_llamacpp.sh; the tests skip
when they are absent): `llama-tokenize` gives Nano's ids, `llama-simple` generates greedily what
`nano-infer -t 0` generates."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nano.engine import Engine
from nano.export import export_checkpoint, export_gguf
from nano.tokenizer import Tokenizer
from test_cli import nano_infer_binary
from test_export_gguf import TEXT, byte_tokenizer, checkpoint, small_model

MIXED = ["天地玄黃 the theory", "债券贷款涨价 ünïcödé 😀 ∑ \\n \\x41 <0x41> \t\r\n", "\0a\n\\", " ", "玄" * 50]


def llamacpp_bin() -> Path:
    env = os.environ.get("NANO_LLAMACPP_BIN")
    candidates = [Path(env)] if env else sorted(
        (Path.home() / ".cache" / "nano-llamacpp").glob("*/bin"), reverse=True)
    for d in candidates:
        if (d / ".complete").exists() or (d / "llama-tokenize").exists():
            return d
    message = "llama.cpp tools not built (scripts/build_llamacpp.sh, or set NANO_LLAMACPP_BIN)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI builds them in .ci/setup-llamacpp.sh")
    pytest.skip(message)


@pytest.fixture(scope="module")
def llama() -> Path:
    return llamacpp_bin()


def llama_tokenize(llama, gguf_path, text: str) -> list[int]:
    proc = subprocess.run([str(llama / "llama-tokenize"), "-m", str(gguf_path), "--stdin", "--ids", "--no-escape",
                           "--log-disable"], input=text.encode("utf-8"), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    line = [x for x in proc.stdout.decode().splitlines() if x.startswith("[")][-1]
    body = line.strip("[]").strip()
    return [int(x) for x in body.split(",")] if body else []


def test_llama_tokenize_gives_nanos_ids_on_mixed_text(llama, tmp_path):
    tok = byte_tokenizer()
    path = export_gguf(tmp_path / "m.gguf", checkpoint=checkpoint(tok, small_model(tok.vocab_size)))
    for text in MIXED:
        assert llama_tokenize(llama, path, text) == tok.encode(text), text


def test_llama_tokenize_gives_nanos_ids_on_shared_corpora(llama, shared_data, tmp_path):
    files = ["pretrain_psycho.txt", "pretrain_amateur_radio.txt"]
    tok = Tokenizer.build_from_texts([(shared_data / f).read_text(encoding="utf-8")[:300_000] for f in files],
                                     4096, byte_fallback=True, threads=2)
    path = export_gguf(tmp_path / "v.gguf", checkpoint=checkpoint(tok, small_model(tok.vocab_size)))
    for f in [*files, "pretrain_chinese_classic.txt", "sft_amateur_radio.jsonl"]:
        text = (shared_data / f).read_text(encoding="utf-8")[:100_000]
        ids = tok.encode(text)
        assert llama_tokenize(llama, path, text) == ids, f
        assert tok.decode(ids) == text


def greedy_ids(engine: Engine, prompt_ids: list[int], n: int) -> tuple[list[int], float]:
    """Nano engine's greedy continuation and the smallest top-1 / top-2 logit gap along it."""
    ids, gap = list(prompt_ids), np.inf
    for _ in range(n):
        logits = engine.logits(ids)[-1]
        top2 = np.sort(logits)[-2:]
        gap = min(gap, float(top2[1] - top2[0]))
        ids.append(int(np.argmax(logits)))
    return ids[len(prompt_ids):], gap


def llama_complete(llama, gguf_path, prompt: str, n: int) -> str:
    """llama.cpp's greedy continuation of `prompt`, from `llama-simple`, which writes each piece with printf and
    fflush. (Not `llama-completion`: its text goes through a logging thread that nothing drains at exit, and on
    a loaded machine the last pieces of stdout were lost.) `llama-simple` echoes the prompt, then the new text."""
    proc = subprocess.run([str(llama / "llama-simple"), "-m", str(gguf_path), "-n", str(n), prompt],
                          capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    out = proc.stdout.decode("utf-8", errors="replace")
    assert out.startswith(prompt) and out.endswith("\n"), out
    return out[len(prompt):-1]


@pytest.fixture(scope="module")
def generation_models(tmp_path_factory):
    tok = byte_tokenizer()
    model = small_model(tok.vocab_size, seed=11)
    d = tmp_path_factory.mktemp("gen")
    ck = checkpoint(tok, model)
    files = {q: (export_checkpoint(ck, d / f"m-{q}.bin", q), export_gguf(d / f"m-{q}.gguf", checkpoint=ck, dtype=q))
             for q in ("f32", "q8_0")}
    return tok, files


@pytest.mark.parametrize("quant, min_gap", [("f32", 1e-2), ("q8_0", 0.05)])
def test_llama_completion_greedy_equals_nano_infer(llama, generation_models, quant, min_gap):
    """64 greedy tokens from the same prompt. The comparison is meaningful only if no step is a near
    tie. For f32, llama.cpp keeps K and V in f16 (its default cache type), which moves every attention
    input by up to 2^-11 of itself; through two layers of unit-scale activations that is ~1e-3 in a
    logit, so every step's top-two gap must exceed 1e-2; for q8_0 the GGUF's f16 scales move the weights by up to 2^-11 x 127 of a step
    (docs/interop.md), so ties must be farther apart (0.05)."""
    tok, files = generation_models
    bin_path, gguf_path = files[quant]
    prompt = TEXT[:8] + " the"
    want_ids, gap = greedy_ids(Engine(bin_path, threads=1), tok.encode(prompt), 64)
    assert tok.token_to_id("<|eos|>") not in want_ids, "pick a seed whose continuation has no <|eos|>"
    assert gap > min_gap, f"near tie ({gap:.2g}) in Nano's own continuation: pick another seed"
    proc = subprocess.run([str(nano_infer_binary()), str(bin_path), "--prompt", prompt, "-n", "64", "-t", "0",
                           "--threads", "1"], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    nano_text = proc.stdout.decode("utf-8")
    assert nano_text == tok.decode(want_ids) + "\n"
    got = llama_complete(llama, gguf_path, prompt, 64)
    assert got == tok.decode(want_ids)
