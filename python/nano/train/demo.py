"""The main job: train a small model on the built-in classical Chinese corpus on CPU, then print a sample."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

PACKAGE = resources.files("nano")
CORPUS = PACKAGE / "corpus" / "chinese_classic.txt"
VOCAB = PACKAGE / "corpus" / "chinese_classic_vocab.json"
MODEL_CONFIG = PACKAGE / "configs" / "demo_model.json"
TRAIN_CONFIG = PACKAGE / "configs" / "demo_train.json"
PROMPT = "天地"


def prepare(data_dir: Path, tokenizer) -> None:
    """Tokenize the corpus once; reuse the prepared directory when it was made with this vocabulary."""
    from nano.data import prepare_pretrain

    meta = data_dir / "meta.json"
    if meta.exists() and json.loads(meta.read_text(encoding="utf-8")).get("tokenizer_hash") == tokenizer.hash:
        return
    with resources.as_file(CORPUS) as corpus:
        prepare_pretrain([str(corpus)], data_dir, tokenizer, val_fraction=0.05, seed=0, progress=False)


def main(overrides: dict) -> dict:
    from nano.tokenizer import Tokenizer
    from nano.train.loop import run

    model_config = json.loads(MODEL_CONFIG.read_text(encoding="utf-8"))
    train_config = json.loads(TRAIN_CONFIG.read_text(encoding="utf-8"))
    train_config.update(overrides)
    with resources.as_file(VOCAB) as vocab:
        tokenizer = Tokenizer.from_file(str(vocab))
    model_config["vocab_size"] = tokenizer.vocab_size
    out_dir = Path(train_config["save_checkpoint_to"])
    data_dir = out_dir / "data"
    prepare(data_dir, tokenizer)
    train_config["train_data"] = str(data_dir)
    print(f"nano.train demo: {sum(1 for _ in CORPUS.open(encoding='utf-8'))} lines of classical Chinese, "
          f"vocabulary {tokenizer.vocab_size}, checkpoints in {out_dir}/", file=sys.stderr)
    result = run(model_config, train_config, tokenizer=tokenizer)
    model = result["model"].eval()
    eos = tokenizer.token_to_id("<|eos|>")
    ids = list(model.generate(tokenizer.encode(PROMPT), 100, temperature=0.8, top_k=20, seed=1, eos_id=eos))
    val = result["val_loss"]
    print(f"\nfinal train loss {result['train_loss']:.3f}" + (f", val loss {val:.3f}" if val is not None else ""))
    print(f"sample: {PROMPT}{tokenizer.decode(ids)}")
    return result
