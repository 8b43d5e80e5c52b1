"""Writers never destroy what they did not write: prepared datasets, vocabularies, model files, checkpoints.

And temporaries a killed run left behind are cleaned on the next run in the same place, while a live
run's temporaries are never touched.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import subprocess_env
from nano._outputs import STALE_AFTER_S, clean_stale_temps
from nano.data import prepare_pretrain
from nano.data.__main__ import main as data_main
from nano.tokenizer import Tokenizer
from nano.tokenizer import main as tokenizer_main

TEXT = "the quick brown fox jumps over the lazy dog\n"


@pytest.fixture
def vocab(tmp_path):
    path = tmp_path / "vocab.json"
    Tokenizer.build_from_texts([TEXT * 3], 110).save(path)
    return path


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT * 20, encoding="utf-8")
    return path


def snapshot(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def backdate(path, seconds=STALE_AFTER_S + 60):
    old = time.time() - seconds
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.utime(os.path.join(root, n), (old, old))
    os.utime(path, (old, old))


# ---- prepared datasets ------------------------------------------------------------------------------
def test_directory_with_meta_json_and_other_files_is_not_replaced(tmp_path, corpus, vocab, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "meta.json").write_text("{}")
    (out / "precious.txt").write_text("keep")
    before = snapshot(out)
    assert data_main(["pretrain", str(corpus), "-o", str(out), "--tokenizer", str(vocab), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "precious.txt" in err and "Traceback" not in err
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_dataset_holding_an_input_of_the_run_is_not_replaced(tmp_path, corpus, vocab, capsys):
    ds = tmp_path / "ds"
    prepare_pretrain(corpus, ds, vocab, progress=False)
    # `pretrain ds/input.txt -o ds`: the input sits in the output
    (ds / "input.txt").write_text(TEXT * 5)
    before = snapshot(ds)
    assert data_main(["pretrain", str(ds / "input.txt"), "-o", str(ds), "--tokenizer", str(vocab),
                      "--no-progress"]) == 2
    assert snapshot(ds) == before and "input" in capsys.readouterr().err
    # an input with one of Nano's own names: the vocabulary of the dataset being replaced
    (ds / "input.txt").unlink()
    before = snapshot(ds)
    with pytest.raises(FileExistsError, match="an input of this run"):
        prepare_pretrain(corpus, ds, ds / "tokenizer.json", progress=False)
    assert snapshot(ds) == before


def test_only_a_dataset_nano_wrote_is_replaced(tmp_path, corpus, vocab):
    ds = tmp_path / "ds"
    prepare_pretrain(corpus, ds, vocab, progress=False)
    prepare_pretrain(corpus, ds, vocab, seed=1, progress=False)  # Nano's own dataset: replaced
    assert json.loads((ds / "meta.json").read_text())["seed"] == 1
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "meta.json").write_text(json.dumps({"format": "something-else"}))
    (fake / "train.tokens").write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="not a prepared dataset Nano wrote"):
        prepare_pretrain(corpus, fake, vocab, progress=False)
    assert (fake / "train.tokens").read_bytes() == b"user data"
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_pretrain(corpus, empty, vocab, progress=False)
    assert (empty / "meta.json").exists()


def test_sft_refuses_the_same_way(tmp_path, vocab):
    from nano.data import prepare_sft

    src = tmp_path / "qa.jsonl"
    src.write_text(json.dumps({"question": "the fox", "answer": "the dog"}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "meta.json").write_text("{}")
    (out / "notes.md").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.md"):
        prepare_sft(src, out, vocab, 16, val_fraction=0.0, progress=False)
    assert (out / "notes.md").read_text() == "mine"


# ---- single-file outputs -----------------------------------------------------------------------------
def test_tokenizer_build_never_overwrites_an_input_or_a_foreign_file(tmp_path, corpus, capsys):
    before = corpus.read_bytes()
    assert tokenizer_main(["build", str(corpus), "--vocab-size", "110", "--out", str(corpus)]) == 1
    assert corpus.read_bytes() == before and "input of this run" in capsys.readouterr().err
    other = tmp_path / "notes.json"
    other.write_text('{"mine": true}')
    assert tokenizer_main(["build", str(corpus), "--vocab-size", "110", "--out", str(other)]) == 1
    assert other.read_text() == '{"mine": true}' and "not a vocabulary file" in capsys.readouterr().err
    out = tmp_path / "v.json"
    assert tokenizer_main(["build", str(corpus), "--vocab-size", "110", "--out", str(out)]) == 0
    assert tokenizer_main(["build", str(corpus), "--vocab-size", "112", "--out", str(out)]) == 0  # its own
    assert Tokenizer.from_file(out).vocab_size == 112


def test_export_never_overwrites_a_foreign_file(tmp_path):
    from nano.export import export_checkpoint

    target = tmp_path / "report.txt"
    target.write_text("mine")
    with pytest.raises(FileExistsError, match="not a model file"):
        export_checkpoint(tmp_path / "missing.pt", target)
    assert target.read_text() == "mine"
    with pytest.raises(FileExistsError, match="input of this run"):
        export_checkpoint(target, target)


def test_new_training_run_does_not_overwrite_the_checkpoint_it_starts_from(tmp_path):
    from nano.train import run
    from test_train import MODEL, train_cfg, write_dataset

    data = write_dataset(tmp_path / "data")
    base = run(MODEL, train_cfg(tmp_path, data, max_iters=1), log=False)
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="would overwrite or prune"):
        run(None, train_cfg(tmp_path, data, max_iters=1, from_checkpoint=base["checkpoint"]), log=False)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


# ---- stale temporaries ---------------------------------------------------------------------------------
def test_stale_temps_of_dead_writers_go_live_and_fresh_ones_stay(tmp_path, corpus, vocab):
    dead, alive = dead_pid(), os.getppid()
    stale_dir = tmp_path / f".ds.tmp-{dead}-0a1b2c3d"  # DatasetWriter
    stale_dir.mkdir()
    (stale_dir / "train.tokens").write_bytes(b"x" * 10)
    live_dir = tmp_path / f".ds.tmp-{alive}-0a1b2c3d"
    live_dir.mkdir()
    fresh = tmp_path / f".ds.tmp-{dead}-ffffffff"  # dead owner, but touched just now: maybe another host's
    fresh.mkdir()
    other_target = tmp_path / f".other.tmp-{dead}-0a1b2c3d"
    other_target.write_bytes(b"")
    foreign = tmp_path / ".ds.tmp-notapid"
    foreign.write_bytes(b"")
    for p in (stale_dir, live_dir, other_target, foreign):
        backdate(p)
    prepare_pretrain(corpus, tmp_path / "ds", vocab, progress=False)
    left = {p.name for p in tmp_path.iterdir()}
    assert stale_dir.name not in left
    assert {live_dir.name, fresh.name, other_target.name, foreign.name} <= left


def test_each_writer_cleans_its_own_stale_temps(tmp_path, corpus):
    dead = dead_pid()
    # the Rust writers' names: vocabulary / model file `.NAME.tmpPID`, shuffle output and pile directory
    vocab_tmp = tmp_path / f".v.json.tmp{dead}"
    shuffle_tmp = tmp_path / f".s.txt.tmp-{dead}-0-0000abcd"
    piles = tmp_path / f".nano-shuffle-{dead}-3-0000abcd"
    piles.mkdir()
    (piles / "pile-0").write_bytes(b"x")
    ckpt_tmp = tmp_path / "run" / f".last.pt.tmp-{dead}-12345678"
    ckpt_tmp.parent.mkdir()
    for p in (vocab_tmp, shuffle_tmp, ckpt_tmp):
        p.write_bytes(b"partial")
    for p in (vocab_tmp, shuffle_tmp, piles, ckpt_tmp):
        backdate(p)
    assert tokenizer_main(["build", str(corpus), "--vocab-size", "110", "--out", str(tmp_path / "v.json")]) == 0
    assert not vocab_tmp.exists()
    from nano.data import shuffle

    shuffle(corpus, tmp_path / "s.txt", progress=False)
    assert not shuffle_tmp.exists() and not piles.exists()
    from nano._atomic import atomic_torch_save

    atomic_torch_save({"a": 1}, tmp_path / "run" / "last.pt")
    assert not ckpt_tmp.exists()


def test_a_dataset_moved_aside_before_a_kill_is_restored_not_deleted(tmp_path):
    aside = tmp_path / f".ds.tmp-{dead_pid()}-0a1b2c3d.old"
    aside.mkdir()
    (aside / "meta.json").write_text("{}")
    backdate(aside)
    assert clean_stale_temps(tmp_path, "ds") == []
    assert (tmp_path / "ds" / "meta.json").read_text() == "{}" and not aside.exists()


def test_sigkill_leftovers_are_cleaned_by_the_next_run(tmp_path, vocab):
    big = tmp_path / "big.txt"
    big.write_text(TEXT * 400_000, encoding="utf-8")
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "nano.data", "pretrain", str(big), "-o", str(out), "--tokenizer", str(vocab),
           "--no-progress", "--threads", "1"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    temps = []
    while not temps and proc.poll() is None and time.monotonic() < deadline:
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".ds.tmp-")]
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed; use a larger input"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert temps and all(p.exists() for p in temps), "SIGKILL leaves the temporary directory"
    # right after the kill the leftover is fresh: kept (a writer on another machine could own it)
    small = tmp_path / "small.txt"
    small.write_text(TEXT * 10)
    prepare_pretrain(small, tmp_path / "other", vocab, progress=False)
    prepare_pretrain(small, out, vocab, progress=False)
    assert all(p.exists() for p in temps)
    for p in temps:
        backdate(p)
    prepare_pretrain(small, out, vocab, progress=False)
    assert not any(p.exists() for p in temps)
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
