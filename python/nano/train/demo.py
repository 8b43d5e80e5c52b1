"""The main job: train a small model on the built-in amateur-radio corpus on CPU, then print a sample.

The corpus is held out by line (a seeded 5 % of its lines are the validation split), and the final
validation loss is printed beside the unigram entropy of that split: the loss of the best model that
ignores context, so the gap is what the model learnt from context.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from nano.tokenizer import EOS

PACKAGE = resources.files("nano")
CORPUS = PACKAGE / "corpus" / "amateur_radio.txt.gz"
VOCAB = PACKAGE / "corpus" / "amateur_radio_vocab.json"
MODEL_CONFIG = PACKAGE / "configs" / "demo_model.json"
TRAIN_CONFIG = PACKAGE / "configs" / "demo_train.json"
VAL_FRACTION, SPLIT_SEED = 0.05, 0
PROMPT = "业余无线电"


def unigram_entropy(ids) -> float:
    """Entropy in nats per token of the tokens' own frequencies.

    No model that ignores context can score a lower cross-entropy on these tokens, so a trained model's
    loss below it is what the model gained from context.
    """
    counts = np.bincount(np.asarray(ids, dtype=np.int64).ravel())
    counts = counts[counts > 0]
    if counts.size == 0:
        raise ValueError("unigram entropy of no tokens")
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def prepare(data_dir: Path, tokenizer) -> dict:
    """Tokenize and split the corpus once; reuse the prepared directory when it was made the same way."""
    from nano.data import prepare_pretrain
    from nano.data.format import read_meta

    wanted = {"tokenizer_hash": tokenizer.hash, "val_fraction": VAL_FRACTION, "seed": SPLIT_SEED}
    if (data_dir / "meta.json").exists():
        meta = read_meta(data_dir)
        if all(meta.get(k) == v for k, v in wanted.items()):
            return meta
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "amateur_radio.txt"
        with CORPUS.open("rb") as packed, gzip.open(packed) as src, open(text, "wb") as dst:
            shutil.copyfileobj(src, dst)
        prepare_pretrain([str(text)], data_dir, tokenizer, val_fraction=VAL_FRACTION, seed=SPLIT_SEED,
                         progress=False)
    return read_meta(data_dir)


def split_tokens(data_dir: Path, meta: dict, split: str) -> np.ndarray:
    return np.fromfile(data_dir / f"{split}.tokens", dtype=np.dtype(meta["dtype"]).newbyteorder("<"))


def main(overrides: dict) -> dict:
    from nano.tokenizer import Tokenizer
    from nano.train.loop import run

    model_config = json.loads(MODEL_CONFIG.read_text(encoding="utf-8"))
    train_config = json.loads(TRAIN_CONFIG.read_text(encoding="utf-8"))
    train_config.update(overrides)
    tokenizer = Tokenizer.from_json(VOCAB.read_text(encoding="utf-8"))
    model_config["vocab_size"] = tokenizer.vocab_size
    out_dir = Path(train_config["save_checkpoint_to"])
    data_dir = out_dir / "data"
    meta = prepare(data_dir, tokenizer)
    baseline = unigram_entropy(split_tokens(data_dir, meta, "val"))
    splits = meta["splits"]
    print(f"nano.train demo: amateur-radio corpus, {splits['train']['tokens']:,} training and "
          f"{splits['val']['tokens']:,} held-out validation tokens (one per character), "
          f"checkpoints in {out_dir}/", file=sys.stderr)
    train_config["train_data"] = str(data_dir)
    result = run(model_config, train_config, tokenizer=tokenizer)
    result["unigram_baseline"] = baseline
    model = result["model"].eval()
    eos = tokenizer.token_to_id(EOS)
    ids = list(model.generate(tokenizer.encode(PROMPT), 100, temperature=0.8, top_k=20, seed=1, eos_id=eos))
    val, best = result["val_loss"], result["best_val_loss"]
    print(f"\nstep {result['step']}: train loss {result['train_loss']:.3f}", end="")
    if val is not None:
        print(f", val loss {val:.3f} (best {best:.3f}; unigram baseline {baseline:.3f}, "
              f"{(val - baseline) / baseline:+.0%})", end="")
    print(f"\nsample: {PROMPT}{tokenizer.decode(ids)}")
    return result
