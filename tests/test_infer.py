"""PyTorch inference: checkpoint loading, greedy CLI output = in-process generation, eos stop, LoRA, plot."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import subprocess_env
from helpers import repeat_loader
from nano.infer import load_model, prompt_ids, stream
from nano.lora import LoraConfig, apply_lora, lora_modules, save_lora
from nano.model import Transformer
from nano.plot import plot, read_log
from nano.train import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parent.parent
VOCAB = REPO / "python" / "nano" / "corpus" / "chinese_classic_vocab.json"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tok_mod = pytest.importorskip("nano.tokenizer")
    tok = tok_mod.Tokenizer.from_file(str(VOCAB))
    text = "天地玄黃宇宙洪荒日月盈昃辰宿列張寒來暑往秋收冬藏閏餘成歲律呂調陽"
    ids = tok.encode(text)
    x = torch.tensor([ids[:17]] * 2)
    tmp = tmp_path_factory.mktemp("infer")
    model = dict(block_size=16, vocab_size=tok.vocab_size, n_layer=2, n_embd=32, n_head=4, n_kv_head=2,
                 n_hidden=64)
    cfg = dict(save_checkpoint_to=str(tmp / "run"), batch_size=2, max_iters=30, learning_rate=2e-2,
               warmup_iters=0, eval_interval=1000, log_interval=5, progress=False, tensorboard=False,
               device="cpu", dtype="float32")
    result = run(model, cfg, train_loader=repeat_loader(x), tokenizer=tok, log=False)
    return tmp, result, tok, text


def test_checkpoint_round_trip_and_greedy_cli_matches(trained):
    tmp, result, tok, text = trained
    model, tok2 = load_model(result["checkpoint"])
    assert tok2.hash == tok.hash
    stats = {}
    expected = "".join(stream(model, tok2, text[:3], temperature=0, max_seq_length=16, stats=stats))
    raw = list(model.generate(tok.encode(text[:3]), 13, temperature=0))
    eos = tok.token_to_id("<|eos|>")
    # stops at the length limit (prompt + output = 16 tokens) or just before the first <|eos|>
    assert stats["generated_tokens"] == (raw.index(eos) if eos in raw else 13)
    env = subprocess_env()
    proc = subprocess.run([sys.executable, "-m", "nano.infer", "-m", result["checkpoint"], "--prompt", text[:3],
                           "-t", "0", "-s", "16", "--profile"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected + "\n"
    assert "time to first token" in proc.stderr


def test_stops_at_eos(trained):
    _, result, tok, text = trained
    model, _ = load_model(result["checkpoint"])
    ids = prompt_ids(tok, text[:3], instruct=False)
    first = next(model.generate(ids, 1, temperature=0))
    out = list(model.generate(ids, 10, temperature=0, eos_id=first))
    assert out == []


def test_instruct_template(trained):
    _, _, tok, _ = trained
    ids = prompt_ids(tok, "天地", instruct=True)
    assert ids[0] == 4 and ids[-1] == 5 and ids[1:-1] == tok.encode("天地")


def test_lora_flag_and_wrong_base(trained, tmp_path):
    _, result, tok, text = trained
    model, _ = load_model(result["checkpoint"])
    apply_lora(model, LoraConfig(rank=2, alpha=4))
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.normal_(0, 0.5)
    path = save_lora(model, tmp_path / "a.pt")
    with_lora, _ = load_model(result["checkpoint"], lora=path)
    x = torch.tensor([tok.encode(text[:8])])
    torch.testing.assert_close(with_lora(x)[0], model(x)[0])
    other = Transformer(with_lora.config)
    torch.save({"format": "nano-checkpoint", "version": 1, "model": other.state_dict(), "step": 0,
                "model_config": with_lora.config.to_dict(), "tokenizer_json": tok.to_json()}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="belongs to base"):
        load_model(tmp_path / "o.pt", lora=path)


def test_not_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    from nano.infer import main

    (tmp_path / "x.pt").write_bytes(b"junk")
    assert main(["-m", str(tmp_path / "x.pt"), "--prompt", "a"]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_plot_writes_png(trained, tmp_path):
    _, result, _, _ = trained
    series = read_log(result["metrics_log"])
    assert [s for s, _ in series["train"]] == [5, 10, 15, 20, 25, 30]
    out = plot(result["metrics_log"], tmp_path / "loss.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_bin_export_gives_the_same_text_as_pytorch(trained, tmp_path):
    native = pytest.importorskip("nano._native")
    if not (hasattr(native, "write_model") and hasattr(native, "Engine")):
        pytest.skip("native extension without the engine/export (rebuild with pip install -e .)")
    from nano.export import export_checkpoint

    _, result, tok, text = trained
    out = export_checkpoint(result["checkpoint"], tmp_path / "m.bin")
    env = subprocess_env()
    model, _ = load_model(result["checkpoint"])
    cases = [(["-t", "0"], dict(temperature=0)),
             (["-t", "0.9", "-k", "20", "-p", "0.95", "-r", "1.1", "--seed", "7"],
              dict(temperature=0.9, top_k=20, top_p=0.95, repetition_penalty=1.1, seed=7))]
    for flags, opts in cases:
        expected = "".join(stream(model, tok, text[:3], max_seq_length=16, **opts)) + "\n"
        # the .bin path of the CLI runs the Rust engine and does not import torch
        rs = subprocess.run([sys.executable, "-m", "nano.infer", "-m", str(out), "--prompt", text[:3], "-s", "16",
                             *flags], env=env, capture_output=True, text=True, timeout=120)
        assert rs.returncode == 0, rs.stderr
        assert rs.stdout == expected, flags


def test_repl_answers_each_line(trained, monkeypatch, capsys):
    import io

    from nano.infer import main

    _, result, tok, text = trained
    model, _ = load_model(result["checkpoint"])
    expected = "".join(stream(model, tok, text[:3], temperature=0, max_seq_length=16))
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{text[:3]}\n{text[:3]}\nexit\n"))
    assert main(["-m", result["checkpoint"], "-t", "0", "-s", "16"]) == 0
    assert capsys.readouterr().out.count(expected + "\n") == 2
