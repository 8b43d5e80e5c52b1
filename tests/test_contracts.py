"""Contracts with one owner: each copy elsewhere is checked against the owner, so a drift fails here.

* Special tokens and the instruction template: ``nano_tokenizer::special`` (Rust), seen through
  ``nano._native``; the engine, ``nano.infer``, SFT preparation and ``nano.tokenizer`` use it.
* SplitMix64: the sampler's (``nano_infer::sampler``); ``nano.sampling.SplitMix64`` must give the same stream
  (the Rust copies are compared in ``rust/infer/tests/splitmix.rs``).
* Thread limits: the WASM engine's ``MAX_THREADS`` (``rust/wasm/src/team.rs``) and the native engine's
  ``MAX_THREADS_PER_CPU`` (``rust/infer/src/engine.rs``); the page's setting (``python/nano/web/app.js``)
  copies both, since it must clamp before the engine's worker exists.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import filler_tokenizer
from nano import _native
from nano.infer import prompt_ids
from nano.sampling import SplitMix64
from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, EOS, INSTRUCT_MARK, RESPONSE_MARK, instruction_ids

REPO = Path(__file__).resolve().parent.parent
SPECIAL_LITERAL = re.compile(r"<\|(instruct_mark|response_mark|eos|padding|unknown|bos)\|>")


def test_python_special_tokens_are_the_native_ones():
    assert DEFAULT_SPECIAL_TOKENS == tuple(_native.DEFAULT_SPECIAL_TOKENS)
    assert DEFAULT_SPECIAL_TOKENS[4:6] == (INSTRUCT_MARK, RESPONSE_MARK) == ("<|instruct_mark|>", "<|response_mark|>")


def test_no_copy_of_the_special_token_names_in_code():
    """Code names the special tokens through the owner's constants; a quoted literal is a new copy."""
    sources = [*(REPO / "python" / "nano").rglob("*.py"), *(REPO / "rust" / "infer" / "src").rglob("*.rs")]
    copies = []
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0] if path.suffix == ".py" else line.split("//", 1)[0]
            if re.search(r"[\"']" + SPECIAL_LITERAL.pattern + r"[\"']", code):
                copies.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    # the tokenizer's own module re-exports the constants; everything else must use them
    assert copies == []


def test_infer_and_sft_use_the_engine_template(tmp_path):
    from nano.data import prepare_sft

    tok = filler_tokenizer(64)
    question, answer = "t10 t11 t12", "t20 t21"
    wrapped = prompt_ids(tok, question, instruct=True)
    assert wrapped == instruction_ids(tok, tok.encode(question))
    assert wrapped[0] == tok.token_to_id(INSTRUCT_MARK) and wrapped[-1] == tok.token_to_id(RESPONSE_MARK)
    corpus = tmp_path / "sft.jsonl"
    corpus.write_text(json.dumps({"question": question, "answer": answer}) + "\n", encoding="utf-8")
    vocab = tmp_path / "v.json"
    tok.save(vocab)
    prepare_sft([corpus], tmp_path / "ds", vocab, block_size=32, val_fraction=0.0, progress=False)
    tokens = np.fromfile(tmp_path / "ds" / "train.tokens", dtype="<u2").tolist()
    assert tokens[: len(wrapped)] == wrapped
    tail = [*tok.encode(answer), tok.token_to_id(EOS)]
    assert tokens[len(wrapped):len(wrapped) + len(tail)] == tail


def test_the_engine_wraps_prompts_as_nano_infer_does(tmp_path):
    from helpers import tiny_model
    from nano.engine import Engine
    from nano.export import export_checkpoint

    tok = filler_tokenizer(96)
    model = tiny_model(vocab_size=96)
    ckpt = {"tokenizer_json": tok.to_json(), "model_config": model.config.to_dict(), "model": model.state_dict()}
    engine = Engine(export_checkpoint(ckpt, tmp_path / "m.bin"), threads=1)
    for text in ("t1t2", ""):
        for instruct in (False, True):
            assert engine.prompt_ids(text, instruct) == prompt_ids(tok, text, instruct)


def test_instruction_ids_refuses_a_vocabulary_without_marks():
    from nano.tokenizer import Tokenizer

    tok = Tokenizer.from_tokens(["<|unknown|>", "a"], [True, False])
    with pytest.raises(ValueError, match="instruct_mark"):
        instruction_ids(tok, [1])


@pytest.mark.parametrize("seed", [0, 1, 42, 2**64 - 1])
def test_python_splitmix64_matches_the_engine(seed):
    rng = SplitMix64(seed)
    assert [rng.next_u64() for _ in range(64)] == _native.splitmix64(seed, 64)


def _constant(path: str, pattern: str) -> int:
    match = re.search(pattern, (REPO / path).read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path}: no match for {pattern}"
    return int(match.group(1))


def test_page_thread_limits_are_the_engines():
    page = "python/nano/web/app.js"
    assert _constant(page, r"^const MAX_THREADS = (\d+);") == _constant(
        "rust/wasm/src/team.rs", r"^pub const MAX_THREADS: u32 = (\d+);")
    assert _constant(page, r"^const THREADS_PER_CPU = (\d+);") == _constant(
        "rust/infer/src/engine.rs", r"^pub const MAX_THREADS_PER_CPU: usize = (\d+);")
