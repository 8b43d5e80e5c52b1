"""The built-in demo (`python -m nano.train` with no arguments): its corpus, its baseline, a short run."""

import gzip
import json
import math

import numpy as np
import pytest
from nano.data.format import read_meta
from nano.train import demo

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_unigram_entropy_matches_hand_computation():
    # frequencies 1/2, 1/4, 1/4: -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1/2 ln 2 + ln 2 = 1.5 ln 2
    assert demo.unigram_entropy([7, 7, 2, 9]) == pytest.approx(1.5 * math.log(2), rel=1e-12)
    # k equally frequent symbols: ln k, whatever the ids and their order
    assert demo.unigram_entropy(np.array([5, 1, 3, 1, 3, 5], dtype=np.uint16)) == pytest.approx(math.log(3))
    assert demo.unigram_entropy([4, 4, 4]) == 0.0
    with pytest.raises(ValueError, match="no tokens"):
        demo.unigram_entropy([])


def test_corpus_is_large_and_fully_covered_by_its_vocabulary():
    from nano.tokenizer import Tokenizer

    with demo.CORPUS.open("rb") as f:
        text = gzip.decompress(f.read()).decode("utf-8")
    assert len(text.encode("utf-8")) >= 1_000_000
    lines = text.splitlines()
    assert len(set(lines)) == len(lines) and "" not in lines  # no line can be in both splits
    tok = Tokenizer.from_json(demo.VOCAB.read_text(encoding="utf-8"))
    ids = tok.encode(text)
    assert tok.unknown_id not in ids and tok.decode(ids) == text


def test_demo_short_run_prints_loss_baseline_and_sample(tmp_path, capsys):
    from nano.train.__main__ import main

    out = tmp_path / "demo"
    assert main(["--set", "max_iters=2", "--set", f"save_checkpoint_to={out}", "--set", "progress=false",
                 "--set", "tensorboard=false"]) == 0
    printed = capsys.readouterr().out
    assert "val loss" in printed and "unigram baseline" in printed and f"sample: {demo.PROMPT}" in printed

    # Run again on the prepared data (reused, not rewritten) and check the returned figures.
    tokens_written = (out / "data" / "val.tokens").stat().st_mtime_ns
    result = demo.main({"max_iters": 2, "save_checkpoint_to": str(out), "progress": False, "tensorboard": False})
    assert (out / "data" / "val.tokens").stat().st_mtime_ns == tokens_written
    assert result["step"] == 2
    assert math.isfinite(result["val_loss"]) and math.isfinite(result["train_loss"])
    meta = read_meta(out / "data")
    assert (meta["val_fraction"], meta["seed"]) == (demo.VAL_FRACTION, demo.SPLIT_SEED)
    val = demo.split_tokens(out / "data", meta, "val")
    assert len(val) == meta["splits"]["val"]["tokens"] > 0
    assert result["unigram_baseline"] == pytest.approx(demo.unigram_entropy(val))
    # Two warm-up steps leave the model near its initial, nearly uniform prediction: about ln(vocabulary
    # size), more than a nat above the unigram entropy of this text.
    assert result["val_loss"] > result["unigram_baseline"]


def test_prepared_data_made_another_way_is_prepared_again(tmp_path):
    from nano.tokenizer import Tokenizer

    tok = Tokenizer.from_json(demo.VOCAB.read_text(encoding="utf-8"))
    first = demo.prepare(tmp_path, tok)
    val = demo.split_tokens(tmp_path, first, "val")
    stale = dict(first, seed=first["seed"] + 1)  # as if split with another seed
    (tmp_path / "meta.json").write_text(json.dumps(stale), encoding="utf-8")
    again = demo.prepare(tmp_path, tok)
    assert again["seed"] == demo.SPLIT_SEED
    assert np.array_equal(demo.split_tokens(tmp_path, again, "val"), val)
