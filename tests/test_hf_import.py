"""Models from Hugging Face folders (``nano.export --from-hf``) run in Nano's engine as in ``transformers``.

``transformers`` (tests only) builds small random-weight ``Qwen2ForCausalLM`` and ``LlamaForCausalLM``
models and saves them with BPE tokenizers trained here (tests/bpe_fixtures.py, each family's
pre-tokenizer). After import, the engine's f32 logits, its greedy tokens, its generated text, its
prompt ids and its chat prompts are compared with ``transformers`` / ``tokenizers`` on the same inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import nano  # noqa: E402
import nano.export  # noqa: E402
from bpe_fixtures import build_fixture  # noqa: E402
from nano.import_hf import import_hf, read_safetensors  # noqa: E402

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
          "{% endif %}")
LLAMA3_CHAT = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
               "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA2_CHAT = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] | trim }}"
               " [/INST]{% else %} {{ m['content'] | trim }} {{ eos_token }}{% endif %}{% endfor %}")

PROMPT = "The café's 日本語 text: def f(x):\n    return x ** 2  # 😀👍🏽 12345"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi 你好 👋"},
            {"role": "assistant", "content": " Hello!"}, {"role": "user", "content": "2 + 2 = ?"}]

# name: (architecture, tokenizer family, config overrides, chat template, stop token)
MODELS = {
    "qwen2-tied": ("qwen2", "qwen2", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                          rope_theta=1e6), CHATML, "<|im_end|>"),
    "qwen2-untied-gqa3": ("qwen2", "qwen2", dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2,
                                                 tie_word_embeddings=False, rope_theta=1e6), CHATML, "<|im_end|>"),
    "llama3-scaled": ("llama", "llama3", dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False,
                                              rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                               "original_max_position_embeddings": 64}),
                      LLAMA3_CHAT, "<|eot_id|>"),
    "llama2-sentencepiece": ("llama", "sentencepiece", dict(num_attention_heads=4, num_key_value_heads=4,
                                                            tie_word_embeddings=True, rope_theta=1e4),
                             LLAMA2_CHAT, "</s>"),
}


def _randomize(model, seed: int) -> None:
    """Weights with spread (logits far from ties), random norms and biases (HF initializes them to 1 / 0,
    which would hide a misplaced norm or a dropped bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if "norm" in name else 0.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


def _build(root: Path, name: str) -> tuple[Path, object]:
    arch, family, overrides, template, stop = MODELS[name]
    d = root / name
    build_fixture(family, d, vocab_size=600)
    tok_path = d / "tokenizer.json"
    data = json.loads(tok_path.read_text(encoding="utf-8"))
    tc = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    if family == "sentencepiece":  # Llama 2: the post-processor puts <s> before every sequence
        data["post_processor"] = {"type": "TemplateProcessing",
                                  "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                             {"Sequence": {"id": "A", "type_id": 0}}],
                                  "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                           {"Sequence": {"id": "B", "type_id": 1}}],
                                  "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
        tok_path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tc.update(chat_template=template, tokenizer_class="PreTrainedTokenizerFast", eos_token=stop)
    (d / "tokenizer_config.json").write_text(json.dumps(tc), encoding="utf-8")
    hf_tok = tokenizers.Tokenizer.from_file(str(tok_path))
    n_tokens = hf_tok.get_vocab_size(with_added_tokens=True)
    kw = dict(vocab_size=n_tokens + 7, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              max_position_embeddings=256, rms_norm_eps=1e-6, eos_token_id=hf_tok.token_to_id(stop))
    kw.update(overrides)
    if arch == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**kw))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**kw))
    _randomize(model, seed=len(name))
    if kw["tie_word_embeddings"]:
        model.tie_weights()
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    return d, model


@pytest.fixture(scope="module", params=list(MODELS))
def imported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    d, model = _build(root, request.param)
    out = import_hf(d, root / f"{request.param}.bin")
    engine = nano.Engine(out, threads=1)
    hf_tok = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    return request.param, d, model, engine, hf_tok


def _greedy(model, ids: list[int], n: int) -> list[int]:
    """n greedy tokens from transformers' own forward pass (no stop token: all n are compared)."""
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids):]


def test_f32_logits_match_transformers(imported):
    # Both compute in float32 from the same weights; the import only renames tensors and permutes q/k rows,
    # so the results differ only in summation order (dot products of <= 96 terms of magnitude ~1, each off by a
    # few float32 ulps ~1e-7 relative) and in the RoPE angles (f64-rounded here, f32 products in transformers:
    # a few 1e-7 rad at these positions). Logits here are O(1..10); those errors stay near 1e-6, so 1e-4 leaves
    # two orders of margin while a wrong permutation, norm, bias or RoPE frequency moves logits by ~0.1 or more.
    name, _, model, engine, hf_tok = imported
    ids = hf_tok.encode(PROMPT).ids[:48]
    assert len(ids) >= 24
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    got = engine.logits(ids)
    assert got.shape == (len(ids), model.config.vocab_size)
    assert float(np.abs(got - want).max()) <= 1e-4, name
    assert float(np.abs(want).max()) > 1.0  # the comparison is not between near-zero logits


def test_64_greedy_tokens_match_transformers(imported):
    # The engine's argmax at every step of transformers' greedy sequence is transformers' next token: the
    # engine's own greedy run would produce the same 64 tokens.
    _, _, model, engine, hf_tok = imported
    ids = hf_tok.encode(PROMPT).ids[:16]
    want = _greedy(model, ids, 64)
    got = engine.logits(ids + want[:-1]).argmax(axis=-1)[len(ids) - 1:]
    assert got.tolist() == want


def test_engine_greedy_text_matches_transformers_decode(imported):
    name, d, model, engine, hf_tok = imported
    stop = hf_tok.token_to_id(MODELS[name][4])
    ids = hf_tok.encode(PROMPT).ids[:16]
    want = _greedy(model, ids, 64)
    if stop in want:  # the engine stops at the model's eos token, without printing it
        want = want[:want.index(stop)]
    text = "".join(engine.generate(ids, max_new_tokens=64, temperature=0))
    assert text == hf_tok.decode(want, skip_special_tokens=True)


def test_pytorch_model_from_the_imported_file_matches_transformers(imported):
    # nano.model (PyTorch, f32) runs the same architecture from the same file: the tolerance argument of
    # test_f32_logits_match_transformers holds unchanged
    name, _, model, engine, hf_tok = imported
    ours = nano.export.load_bin(engine.path)
    ids = hf_tok.encode(PROMPT).ids[:48]
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
        got = ours(torch.tensor([ids]))[0][0].numpy()
    assert float(np.abs(got - want).max()) <= 1e-4, name


def test_prompt_ids_match_tokenizers(imported):
    name, _, _, engine, hf_tok = imported
    # tokenizers adds <s> through the Llama 2 post-processor; the importer records it as add_bos_token
    assert engine.prompt_ids(PROMPT) == hf_tok.encode(PROMPT).ids
    if name == "llama2-sentencepiece":
        assert engine.prompt_ids(PROMPT)[0] == hf_tok.token_to_id("<s>")
    assert isinstance(engine.tokenizer, nano.tokenizer.BpeTokenizer)
    assert engine.tokenizer.encode(PROMPT) == hf_tok.encode(PROMPT, add_special_tokens=False).ids


def test_chat_prompt_matches_apply_chat_template(imported):
    _, d, _, engine, hf_tok = imported
    tok = transformers.AutoTokenizer.from_pretrained(d)
    for messages, gen in [(MESSAGES, True), (MESSAGES[:2], False), (MESSAGES[1:2], True)]:
        want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        assert engine.render_chat(messages, add_generation_prompt=gen) == want
    # instruction mode wraps a prompt in the model's template as one user turn
    rendered = tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                       add_generation_prompt=True)
    assert engine.prompt_ids(PROMPT, instruct=True) == hf_tok.encode(rendered, add_special_tokens=False).ids


# --- bad inputs ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    d, _ = _build(tmp_path_factory.mktemp("bad"), "qwen2-tied")
    return d


def _copy(src: Path, tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(src, d)
    return d


def _refused(d: Path, out: Path, exc, *needles: str) -> None:
    with pytest.raises(exc) as e:
        import_hf(d, out)
    for n in needles:
        assert n in str(e.value), str(e.value)
    assert not out.exists() and list(out.parent.glob(f".{out.name}*")) == []


def test_unknown_architecture_is_refused(qwen_dir, tmp_path):
    d = _copy(qwen_dir, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["MixtralForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    _refused(d, tmp_path / "out.bin", ValueError, "MixtralForCausalLM", "config.json", "architectures")
    for field, value, needle in [("architectures", ["LlamaForCausalLM"], "attention_bias"),
                                 ("hidden_act", "gelu", "hidden_act"), ("use_sliding_window", True, "sliding"),
                                 ("head_dim", 32, "head_dim")]:
        cfg = json.loads((qwen_dir / "config.json").read_text())
        cfg.update({field: value, "attention_bias": True})
        (d / "config.json").write_text(json.dumps(cfg))
        _refused(d, tmp_path / "out.bin", ValueError, needle, "config.json")


def test_missing_tokenizer_is_refused(qwen_dir, tmp_path):
    d = _copy(qwen_dir, tmp_path)
    (d / "tokenizer.json").unlink()
    _refused(d, tmp_path / "out.bin", FileNotFoundError, "tokenizer.json")


def test_shapes_that_disagree_are_refused(qwen_dir, tmp_path):
    d = _copy(qwen_dir, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] += 32
    (d / "config.json").write_text(json.dumps(cfg))
    _refused(d, tmp_path / "out.bin", ValueError, "mlp.gate_proj.weight", "shape", str(d))


def test_truncated_safetensors_is_refused(qwen_dir, tmp_path):
    d = _copy(qwen_dir, tmp_path)
    st = d / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    _refused(d, tmp_path / "out.bin", ValueError, "model.safetensors", "truncated")
    st.write_bytes(b"\x05")
    _refused(d, tmp_path / "out.bin", ValueError, "model.safetensors", "truncated")


def test_safetensors_reader_matches_the_safetensors_package(qwen_dir):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    want = safetensors_numpy.load_file(str(qwen_dir / "model.safetensors"))
    got = read_safetensors(qwen_dir / "model.safetensors")
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32))


def test_cli_imports_quantized(qwen_dir, tmp_path):
    out = tmp_path / "q8.bin"
    r = subprocess.run([sys.executable, "-m", "nano.export", str(out), "--from-hf", str(qwen_dir), "--quant", "q8_0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    engine = nano.Engine(out, threads=1)
    assert engine.config["qkv_bias"] is True and engine.config["rope_theta"] == 1e6
    r = subprocess.run([sys.executable, "-m", "nano.export", str(tmp_path / "x.bin"), "--from-hf",
                        str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert r.returncode == 1 and "nowhere" in r.stderr


def test_convert_bin_requantizes_an_imported_model(qwen_dir, tmp_path):
    # --from-bin keeps the tokenizer section and the 2026.2 fields; f32 -> f32 is lossless
    f32 = import_hf(qwen_dir, tmp_path / "a.bin")
    again = nano.export.convert_bin(f32, tmp_path / "b.bin")
    a, b = nano.Engine(f32, threads=1), nano.Engine(again, threads=1)
    assert a.config == b.config and b._native.tokenizer_kind == "hf"
    ids = a.prompt_ids(PROMPT)
    np.testing.assert_array_equal(a.logits(ids), b.logits(ids))
    assert a.render_chat(MESSAGES) == b.render_chat(MESSAGES)
    q4 = nano.export.convert_bin(f32, tmp_path / "c.bin", dtype="q4_0")
    assert nano.export.read_bin(q4)["info"]["dtype"] == "q4_0"
    with pytest.raises(ValueError, match="original folder"):
        nano.export.export_gguf(tmp_path / "x.gguf", from_bin=f32)


@pytest.mark.skipif(os.environ.get("NANO_LARGE_TESTS") != "1",
                    reason="a 0.5B-parameter model (about 8 GB of memory, minutes): set NANO_LARGE_TESTS=1")
def test_qwen2_5_0_5b_shape_matches_transformers(qwen_dir, tmp_path):
    # Qwen2.5-0.5B-Instruct's architecture at full size (24 layers, hidden 896, 14/2 heads, FFN 4864, vocab
    # 151936, q/k/v biases, theta 1e6, tied head) with random weights and the small fixture tokenizer: the
    # engine's f32 logits within 1e-4 of transformers' (same argument as test_f32_logits_match_transformers;
    # the dot products are longer, up to 4864 terms, which keeps the error near 1e-5 at these magnitudes).
    d = tmp_path / "qwen0.5b"
    d.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qwen_dir / f, d / f)
    cfg = transformers.Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                   num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                                   rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True)
    model = transformers.Qwen2ForCausalLM(cfg)
    _randomize(model, seed=5)
    model.tie_weights()
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    out = import_hf(d, tmp_path / "q.bin")
    shutil.rmtree(d)
    engine = nano.Engine(out, threads=2)
    hf_tok = tokenizers.Tokenizer.from_file(str(qwen_dir / "tokenizer.json"))
    ids = hf_tok.encode(PROMPT).ids[:32]
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    err = float(np.abs(engine.logits(ids) - want).max())
    assert err <= 1e-4, (err, float(np.abs(want).max()))
    greedy = _greedy(model, ids, 8)
    assert engine.logits(ids + greedy[:-1]).argmax(axis=-1)[len(ids) - 1:].tolist() == greedy


def test_openai_server_uses_the_models_tokenizer_and_template(qwen_dir, tmp_path):
    # `nano-infer serve` on an imported model: a chat request is rendered by the model's own template and
    # a completion prompt encoded by its BPE tokenizer; both answer what nano.Engine generates from the
    # ids that transformers' template and HF tokenizers give
    import http.client
    import re

    from test_cli import nano_infer_binary

    path = import_hf(qwen_dir, tmp_path / "q.bin")
    engine = nano.Engine(path, threads=1)
    hf_tok = tokenizers.Tokenizer.from_file(str(qwen_dir / "tokenizer.json"))
    rendered = transformers.AutoTokenizer.from_pretrained(qwen_dir).apply_chat_template(
        MESSAGES, tokenize=False, add_generation_prompt=True)
    want_chat = "".join(engine.generate(hf_tok.encode(rendered, add_special_tokens=False).ids, 16, temperature=0))
    want_text = "".join(engine.generate(hf_tok.encode(PROMPT).ids, 16, temperature=0))
    proc = subprocess.Popen([str(nano_infer_binary()), "serve", str(path), "--port", "0", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", proc.stderr.readline()).group(1))

        def post(route: str, body: dict) -> dict:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", route, body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = json.loads(resp.read())
            assert resp.status == 200, data
            return data

        chat = post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 16, "temperature": 0})
        assert chat["choices"][0]["message"]["content"] == want_chat
        text = post("/v1/completions", {"prompt": PROMPT, "max_tokens": 16, "temperature": 0})
        assert text["choices"][0]["text"] == want_text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
