"""Contracts every engine shares, checked so that copies cannot drift: the sampling-option check
(native engine, nano.Engine, PyTorch's nano.infer and the WASM binding refuse the same options with
the same message), the model config's field set in Rust and Python, and careless input to nano.Engine
(bytes prompts, thread counts, non-finite weights, a prompt that fills the context)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from nano import _native
from nano.engine import Engine
from nano.export import export_checkpoint
from nano.model import ModelConfig
from nano.sampling import Sampler, check_options
from test_format import TEXT, small_model, small_tokenizer

REPO = Path(__file__).resolve().parent.parent
NAN, INF = math.nan, math.inf

# (temperature, top_k, top_p, repetition_penalty), the option at fault
BAD_OPTIONS = [
    ((NAN, 0, 1.0, 1.0), "temperature"),
    ((INF, 0, 1.0, 1.0), "temperature"),
    ((-0.5, 0, 1.0, 1.0), "temperature"),
    ((1.0, 0, NAN, 1.0), "top_p"),
    ((1.0, 0, INF, 1.0), "top_p"),
    ((1.0, 0, -INF, 1.0), "top_p"),
    ((1.0, 0, 1.0, NAN), "repetition_penalty"),
    ((1.0, 0, 1.0, INF), "repetition_penalty"),
    ((1.0, 0, 1.0, 0.0), "repetition_penalty"),
    ((1.0, 0, 1.0, -1.0), "repetition_penalty"),
    ((1.0, -1, 1.0, 1.0), "top_k"),
]
GOOD_OPTIONS = [(0.0, 0, 1.0, 1.0), (0.7, 5, 0.9, 1.1), (1.0, 0, -2.0, 1.0), (1.0, 0, 7.0, 1.0)]


def native_message(opts) -> str:
    with pytest.raises(ValueError) as e:
        _native.check_sampling_options(*opts)
    return str(e.value)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contracts")
    from nano.checkpoint import FORMAT, VERSION

    tok, model = small_tokenizer(), small_model(seed=3)
    ckpt = {"format": FORMAT, "version": VERSION, "step": 0, "model": model.state_dict(),
            "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    torch.save(ckpt, tmp / "m.pt")
    return {"bin": export_checkpoint(ckpt, tmp / "m.bin"), "pt": tmp / "m.pt", "model": model, "tok": tok}


@pytest.mark.parametrize("opts,field", BAD_OPTIONS)
def test_bad_sampling_options_get_the_same_error_in_every_engine(files, opts, field, capsys):
    message = native_message(opts)
    assert message.startswith(field), message
    t, k, p, r = opts
    # nano.Engine (the native engine, checked when generate is called)
    eng = Engine(files["bin"], threads=1)
    with pytest.raises(ValueError) as e:
        eng.generate(TEXT[:3], temperature=t, top_k=k, top_p=p, repetition_penalty=r)
    assert str(e.value) == message
    # PyTorch: the sampler, model.generate and the nano.infer command for .pt and .bin files
    with pytest.raises(ValueError) as e:
        Sampler(temperature=t, top_k=k, top_p=p, repetition_penalty=r)
    assert str(e.value) == message
    with pytest.raises(ValueError) as e:
        next(files["model"].generate([4, 5], 3, temperature=t, top_k=k, top_p=p, repetition_penalty=r))
    assert str(e.value) == message
    from nano.infer import main

    for path in (files["pt"], files["bin"]):
        argv = ["-m", str(path), "--prompt", TEXT[:3], f"--temperature={t}", f"--top_k={k}", f"--top_p={p}",
                f"--repetition_penalty={r}"]
        assert main(argv) == 2
        err = capsys.readouterr()
        assert err.out == "" and f"nano.infer: error: {message}" in err.err


@pytest.mark.parametrize("opts", GOOD_OPTIONS)
def test_valid_options_pass_every_check(files, opts):
    check_options(*opts)
    t, k, p, r = opts
    Sampler(temperature=t, top_k=k, top_p=p, repetition_penalty=r)
    pieces = list(Engine(files["bin"], threads=1).generate(TEXT[:3], max_new_tokens=2, temperature=t, top_k=k,
                                                            top_p=p, repetition_penalty=r))
    assert len(pieces) <= 2


def test_wasm_binding_refuses_the_same_options():
    """The WASM engine's set_options calls the same native check (built package and Node needed)."""
    pkg = REPO / "python" / "nano" / "web" / "pkg"
    node = shutil.which("node")
    if node is None or not (pkg / "nano_wasm_bg.wasm").exists():
        pytest.skip("needs node and the WASM package (scripts/build_wasm.sh)")
    import tempfile

    tok, model = small_tokenizer(), small_model(seed=3)
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_checkpoint(ckpt, Path(tmp) / "m.bin")
        # top_k is unsigned in the WASM API: only the float options can be out of range there
        rows = [opts for opts, field in BAD_OPTIONS if field != "top_k"] + GOOD_OPTIONS
        as_text = [[str(v).lower() for v in row] for row in rows]
        proc = subprocess.run([node, str(REPO / "tests" / "web" / "node_options.mjs"), str(pkg), str(path),
                               json.dumps(as_text)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = [native_message(opts) for opts, field in BAD_OPTIONS if field != "top_k"] + ["accepted"] * len(GOOD_OPTIONS)
    assert got == want


def test_model_config_fields_agree_between_rust_and_python():
    """The Rust ModelConfig (what model files store) is nano.model.ModelConfig less the training-only
    fields, plus the file-only ones; a field added on one side only fails here."""
    python = {f.name for f in dataclasses.fields(ModelConfig)}
    rust = set(_native.MODEL_CONFIG_FIELDS)
    training_only, file_only = set(_native.MODEL_CONFIG_TRAINING_ONLY), set(_native.MODEL_CONFIG_FILE_ONLY)
    assert training_only <= python and not training_only & rust
    assert file_only <= rust and not file_only & python
    assert python - training_only == rust - file_only


def test_unknown_config_keys_are_refused_by_the_writer(tmp_path):
    tok, model = small_tokenizer(), small_model(seed=3)
    config = {**model.config.to_dict(), "n_experts": 8}
    ckpt = {"model": model.state_dict(), "model_config": config, "tokenizer_json": tok.to_json()}
    with pytest.raises(ValueError, match="unknown field `n_experts`"):
        export_checkpoint(ckpt, tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


def test_bytes_are_neither_a_prompt_nor_token_ids(files):
    eng = Engine(files["bin"], threads=1)
    for bad in (b"abc", bytearray(b"abc")):
        with pytest.raises(TypeError, match="must be a str or a list of token ids"):
            eng.generate(bad)
        with pytest.raises(TypeError, match="must be a str or a list of token ids"):
            eng.logits(bad)
    assert len(list(eng.generate([4, 5, 6], max_new_tokens=2, temperature=0))) <= 2  # ids still work


@pytest.mark.parametrize("threads", [0, -1, 10_000, 10**12, 10**30])
def test_thread_counts_out_of_bounds_are_refused(files, threads):
    with pytest.raises(ValueError, match=f"threads must be between 1 and .*, got {threads}$"):
        Engine(files["bin"], threads=threads)
    with pytest.raises(TypeError):
        Engine(files["bin"], threads=2.5)
    assert Engine(files["bin"], threads=1).logits([4, 5]).shape == (2, 96)  # later engines start fine


def test_non_finite_weights_are_refused_by_writer_and_reader(files, tmp_path):
    tok, model = small_tokenizer(), small_model(seed=3)
    state = model.state_dict()
    state["layers.1.feed_forward.w2.weight"][3, 7] = float("nan")
    ckpt = {"model": state, "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    with pytest.raises(ValueError, match=r'"layers.1.feed_forward.w2.weight" holds a non-finite value'):
        export_checkpoint(ckpt, tmp_path / "nan.bin")
    # a 2024.10 file (no checksum) whose final norm was overwritten with +inf
    old = export_checkpoint(files["pt"], tmp_path / "old.bin", legacy=True)
    data = bytearray(old.read_bytes())
    cfg = files["model"].config
    norm_end = len(data) - 2 * cfg.block_size * (cfg.head_dim // 2) * 4  # RoPE tables follow the norm
    data[norm_end - 4:norm_end] = np.float32(np.inf).tobytes()
    old.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r'"norm.weight" holds a non-finite value .* at element 63'):
        Engine(old)


def test_a_prompt_that_fills_the_context_says_so(files, capsys):
    from nano.infer import main

    tok, block = files["tok"], files["model"].config.block_size
    prompt = next(TEXT[:n] for n in range(1, len(TEXT) + 1) if len(tok.encode(TEXT[:n])) == block)
    for path in (files["pt"], files["bin"]):
        assert main(["-m", str(path), "--prompt", prompt, "-t", "0"]) == 0
        err = capsys.readouterr()
        assert err.out == "\n"
        assert f"the prompt ({block} tokens) fills the context of {block} tokens: nothing was generated" in err.err
