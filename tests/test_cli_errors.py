"""Careless input to the command lines and configs: one clear line, a non-zero exit, never a traceback.

Also the size bounds (an SFT block size or a bool depth that used to hang) and training that diverges.
"""

import json
import subprocess
import sys

import pytest
import torch
from conftest import subprocess_env
from nano.train.config import normalise
from test_train import MODEL, train_cfg, write_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(*args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          env=subprocess_env())
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def vocab(tmp_path):
    from nano.tokenizer import Tokenizer

    path = tmp_path / "vocab.json"
    Tokenizer.build_from_texts(["the quick brown fox jumps over the lazy dog"], 110).save(path)
    return path


@pytest.mark.parametrize("args, expected", [
    (["--threads", "-1"], "--threads: must be between 1 and 1024, got -1"),
    (["--threads", str(10**12)], "--threads: must be between 1 and 1024"),
    (["--seed", "-1"], f"--seed: must be between 0 and {2**64 - 1}, got -1"),
    (["--seed", str(2**64)], "--seed: must be between 0"),
])
def test_data_and_tokenizer_clis_bound_threads_and_seeds(tmp_path, vocab, args, expected, capsys):
    from nano.data.__main__ import main as data_main
    from nano.tokenizer import main as tokenizer_main

    corpus = tmp_path / "c.txt"
    corpus.write_text("the fox\n" * 10)
    for main, argv in ((data_main, ["pretrain", str(corpus), "-o", str(tmp_path / "o"), "--tokenizer", str(vocab)]),
                       (data_main, ["shuffle", str(corpus), "-o", str(tmp_path / "s.txt")])):
        with pytest.raises(SystemExit) as e:
            main(argv + args)
        assert e.value.code == 2 and expected in capsys.readouterr().err
    if args[0] == "--threads":
        with pytest.raises(SystemExit) as e:
            tokenizer_main(["build", str(corpus), "--out", str(tmp_path / "v.json"), *args])
        assert e.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.txt").exists()


def test_sft_block_size_is_bounded(tmp_path, vocab):
    src = tmp_path / "qa.jsonl"
    src.write_text(json.dumps({"question": "the fox", "answer": "the dog"}) + "\n")
    proc = cli("nano.data", "sft", str(src), "-o", str(tmp_path / "o"), "--tokenizer", str(vocab),
               "--block-size", "100000000")
    assert proc.returncode == 2 and "block_size must be an integer from 2 to 65536" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_sft_at_the_largest_block_size_writes_padded_rows(tmp_path, vocab):
    import numpy as np
    from nano.data import prepare_sft

    src = tmp_path / "qa.jsonl"
    src.write_text((json.dumps({"question": "the fox", "answer": "the dog"}) + "\n") * 3)
    s = prepare_sft(src, tmp_path / "o", vocab, 65536, val_fraction=0.0, progress=False)
    tokens = np.fromfile(tmp_path / "o" / "train.tokens", dtype=s["dtype"])
    from nano.tokenizer import Tokenizer

    tok = Tokenizer.from_file(vocab)
    used = 1 + len(tok.encode("the fox")) + 1 + len(tok.encode("the dog")) + 1  # marks, question, answer, eos
    assert len(tokens) == 3 * 65537 and s["splits"]["train"]["samples"] == 3
    assert np.count_nonzero(tokens == tok.token_to_id("<|padding|>")) == 3 * (65537 - used)


@pytest.mark.parametrize("argv, expected, code", [
    (["bool", "--depth", "100"], "depth must be a positive integer up to 10, got 100", 1),
    (["sort", "--length", "100000"], "length must be a positive integer up to 512", 1),
    (["sort", "--eval-samples", "0"], "--eval-samples: must be between 1 and 10000000, got 0", 2),
    (["sort", "--threads", "-1"], "--threads: must be between 0 and 1024", 2),
])
def test_problem_cli_bounds(argv, expected, code, capsys):
    from nano.problem.__main__ import main

    try:
        rc = main(argv + ["--out", "/nonexistent/never-written"])
    except SystemExit as e:
        rc = e.code
    assert rc == code and expected in capsys.readouterr().err


def test_web_port_out_of_range_is_a_message():
    proc = cli("nano.web", "--port", "99999")
    assert proc.returncode == 2 and "--port: must be between 0 and 65535, got 99999" in proc.stderr


# ---- the training config ---------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, expected", [
    ("save_interval", 0, "save_interval must be >= 1, got 0"),
    ("device", "tpu", "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    ("num_threads", -1, "num_threads must be between 0 and 1024, got -1"),
    ("batch_size", 2.7, "batch_size must be an integer, got 2.7"),
    ("keep_last", -3, "keep_last must be >= 0, got -3"),
    ("grad_clip", -1, "grad_clip must be in [0, inf], got -1"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number, got nan"),
    ("decay_lr", "yes", "decay_lr must be true or false, got 'yes'"),
    ("beta2", 1.0, "beta2 must be in [0, 1), got 1.0"),
    ("lora_targets", "wq", "lora_targets must be a non-empty list of names, got 'wq'"),
    ("random_seed", -1, "random_seed must be between 0 and 2147483647, got -1"),
    ("learnign_rate", 1e-3, "unknown key 'learnign_rate' (did you mean 'learning_rate'?)"),
])
def test_every_config_value_is_checked_up_front(key, value, expected):
    with pytest.raises(ValueError) as e:
        normalise({key: value})
    assert str(e.value) == f"train config: {expected}"


def test_config_values_of_the_right_kind_pass():
    cfg = normalise({"lr_decay_iters": 1e9, "lora_alpha": 32, "from_checkpoint": "", "grad_clip": None,
                     "betas": [0.9, 0.99]})
    assert cfg["lr_decay_iters"] == 10**9 and cfg["lora_alpha"] == 32.0 and cfg["from_checkpoint"] is None
    assert cfg["beta2"] == 0.99 and cfg["save_interval"] == cfg["eval_interval"]


def test_missing_files_named_in_a_config_are_errors(tmp_path):
    data = write_dataset(tmp_path / "data")
    for key in ("tokenizer_path", "val_data", "from_checkpoint"):
        with pytest.raises(FileNotFoundError, match=f"{key} .*typo.json does not exist"):
            normalise(train_cfg(tmp_path, data, **{key: str(tmp_path / "typo.json")}))


@pytest.mark.parametrize("content, expected", [
    ("[1, 2]", "a config must be a JSON object (key: value), got a list"),
    ('{"save_interval": 0}', "save_interval must be >= 1"),
    ('{"device": "tpu"}', "device must be auto"),
    ('{"num_threads": -1}', "num_threads must be between 0 and 1024"),
])
def test_train_cli_reports_config_errors_without_traceback(tmp_path, content, expected, capsys):
    from nano.train.__main__ import main

    (tmp_path / "t.json").write_text(content)
    (tmp_path / "m.json").write_text(json.dumps(MODEL))
    assert main(["-m", str(tmp_path / "m.json"), "-t", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


# ---- divergence --------------------------------------------------------------------------------------
def test_diverging_training_stops_non_zero_and_keeps_the_good_checkpoint(tmp_path, capsys):
    from nano.train.__main__ import main

    data = write_dataset(tmp_path / "data")
    cfg = train_cfg(tmp_path, data, max_iters=2, save_interval=1, eval_interval=100)
    (tmp_path / "t.json").write_text(json.dumps(cfg))
    (tmp_path / "m.json").write_text(json.dumps(MODEL))
    args = ["-m", str(tmp_path / "m.json"), "-t", str(tmp_path / "t.json")]
    assert main(args) == 0
    run_dir = tmp_path / "run"
    good = {p.name: p.read_bytes() for p in run_dir.glob("*.pt")}
    assert main([*args, "--resume", "--set", "learning_rate=1e30", "--set", "max_iters=6"]) == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "Traceback" not in err
    # The steps before the weights turned NaN may still be saved (huge but finite weights that give a finite
    # loss are not detectable as broken); the last checkpoint of the good run stays, and nothing saved holds
    # a NaN or inf.
    assert (run_dir / "ckpt_0000002.pt").read_bytes() == good["ckpt_0000002.pt"]
    assert_all_checkpoints_finite(run_dir)


def assert_all_checkpoints_finite(run_dir):
    for path in run_dir.glob("*.pt"):
        state = torch.load(path, weights_only=True)["model"]
        assert all(torch.isfinite(t).all() for t in state.values()), path


def test_divergence_from_the_first_steps_writes_no_nan_checkpoint(tmp_path):
    from nano.train import run
    from nano.train.loop import TrainingDiverged

    data = write_dataset(tmp_path / "data")
    with pytest.raises(TrainingDiverged, match="lower learning_rate|Lower learning_rate"):
        run(MODEL, train_cfg(tmp_path, data, learning_rate=1e30, max_iters=5, save_interval=1), log=False)
    assert_all_checkpoints_finite(tmp_path / "run")
