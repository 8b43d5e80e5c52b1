"""python -m nano.train [-m MODEL.json] [-t TRAIN.json] [--set key=value ...] [--resume]

With no -m/-t it runs the built-in demo (a small model on the bundled amateur-radio corpus).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nano._cli import main_errors
from nano.train.config import parse_overrides, read_json


@main_errors("nano.train", code=2)
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nano.train", description=__doc__.split("\n\n")[1])
    ap.add_argument("-m", "--model-config", help="model config JSON (optional with from_checkpoint)")
    ap.add_argument("-t", "--train-config", help="train config JSON (keys of the original config_pretrain.json)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a train config key (JSON value), e.g. --set max_iters=100")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run in save_checkpoint_to (or from_checkpoint) exactly where it stopped")
    ap.add_argument("--demo", action="store_true", help="train on the built-in corpus (the default with no -m/-t)")
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.resume:
        overrides["resume"] = True
    if args.demo or not (args.model_config or args.train_config):
        from nano.train.demo import main as demo

        demo(overrides)
        return 0
    from nano.train.loop import run

    train_config, config_dir = {}, None
    if args.train_config:
        train_config = read_json(args.train_config)
        config_dir = Path(args.train_config).resolve().parent
    train_config.update(overrides)
    model_config = read_json(args.model_config) if args.model_config else None
    result = run(model_config, train_config, config_dir=config_dir)
    print(f"done: step {result['step']}, train loss {result['train_loss']}, val loss {result['val_loss']}, "
          f"checkpoint {result['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
