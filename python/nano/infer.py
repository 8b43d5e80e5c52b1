"""The inference command ``python -m nano.infer -m MODEL [--prompt TEXT]`` (or a REPL), and PyTorch generation.

It drives two engines: a ``.pt`` checkpoint runs on the PyTorch model (:mod:`nano.model`, this module's
:func:`stream`); a ``.bin`` model file goes to the native Rust engine (the ``rust/infer`` crate, reached
through :class:`nano.Engine`). Both use the same sampler (docs/sampling.md), so they give the same tokens
for the same seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from nano.tokenizer import EOS, instruction_ids


def load_model(path: str | Path, lora: str | Path | None = None, device: str = "cpu"):
    """(model in eval mode, tokenizer) from a training checkpoint, optionally with a LoRA adapter file."""
    from nano.checkpoint import load_checkpoint
    from nano.lora import LoraConfig, apply_lora, load_lora
    from nano.model import ModelConfig, Transformer
    from nano.tokenizer import Tokenizer

    ckpt = load_checkpoint(path)
    if not ckpt.get("tokenizer_json"):
        raise ValueError(f"{path}: the checkpoint has no vocabulary (tokenizer_json); cannot decode")
    model = Transformer(ModelConfig.from_dict(ckpt["model_config"]))
    state = ckpt["model"]
    if any(".lora_" in k for k in state):  # a LoRA training run's checkpoint
        apply_lora(model, LoraConfig.from_dict(ckpt["lora_config"]))
        model.lora_base_hash = ckpt.get("base_hash")
    model.load_state_dict(state)
    if lora:
        if Path(lora).suffix == ".bin":
            raise ValueError(f"{lora}: a .bin LoRA plug-in runs with a .bin model; with a checkpoint pass the "
                             "adapter's .pt file (lora.pt from training)")
        load_lora(model, lora)
    return model.to(device).eval(), Tokenizer.from_json(ckpt["tokenizer_json"])


def prompt_ids(tokenizer, prompt: str, instruct: bool) -> list[int]:
    """Token ids of the prompt; ``instruct`` wraps them in the instruction template
    (:func:`nano.tokenizer.instruction_ids`, the engine's own)."""
    ids = tokenizer.encode(prompt)
    return instruction_ids(tokenizer, ids) if instruct else ids


def stream(model, tokenizer, prompt: str, *, max_seq_length: int | None = None, instruct: bool = False,
           stats: dict | None = None, **sampling) -> Iterator[str]:
    """Text pieces as tokens are produced; stops at <|eos|> or when the sequence reaches max_seq_length."""
    ids = prompt_ids(tokenizer, prompt, instruct)
    limit = min(max_seq_length or model.config.block_size, model.config.block_size)
    if len(ids) > limit:
        raise ValueError(f"prompt of {len(ids)} tokens exceeds the maximum sequence length {limit}")
    decoder = tokenizer.stream_decoder(skip_special=True)
    started = time.perf_counter()
    first = None
    n = 0
    for token in model.generate(ids, limit - len(ids), eos_id=tokenizer.token_to_id(EOS), **sampling):
        n += 1
        first = first or time.perf_counter()
        yield decoder.push(token)
    tail = decoder.finish()
    if tail:
        yield tail
    if stats is not None:
        end = time.perf_counter()
        stats.update(prompt_tokens=len(ids), generated_tokens=n, context=limit,
                     time_to_first_token=(first or end) - started,
                     decode_tokens_per_s=(n - 1) / (end - first) if first and n > 1 and end > first else None)


def _bin_stream(engine, prompt, args, stats):
    limit = args.max_seq_length or engine.config["block_size"]
    n_prompt = len(engine.prompt_ids(prompt, args.instruct))
    started = time.perf_counter()
    first = None
    it = engine.generate(prompt, max(0, limit - n_prompt), temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
                         instruct=args.instruct)
    n = 0
    for piece in it:
        n += 1
        first = first or time.perf_counter()
        yield piece
    end = time.perf_counter()
    stats.update(prompt_tokens=n_prompt, generated_tokens=n, context=limit,
                 time_to_first_token=(first or end) - started,
                 decode_tokens_per_s=(n - 1) / (end - first) if first and n > 1 and end > first else None)


def _answer(gen, prompt, args, out) -> None:
    stats: dict = {}
    for piece in gen(prompt, stats):
        out.write(piece)
        out.flush()
    out.write("\n")
    if stats["generated_tokens"] == 0 and stats["prompt_tokens"] >= stats["context"]:
        print(f"nano.infer: the prompt ({stats['prompt_tokens']} tokens) fills the context of {stats['context']} "
              "tokens: nothing was generated", file=sys.stderr)
    if args.profile:
        tps = stats.get("decode_tokens_per_s")
        rate = f"{tps:.1f} tokens/s" if tps else "n/a tokens/s"
        print(f"[{stats['prompt_tokens']} prompt tokens, {stats['generated_tokens']} generated, "
              f"time to first token {stats['time_to_first_token'] * 1000:.1f} ms, {rate}]", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nano.infer", description="Generate text from a Nano model.")
    ap.add_argument("-m", "--model", required=True, help="training checkpoint (.pt) or model file (.bin)")
    ap.add_argument("-l", "--lora", help="LoRA adapter (.pt from training, or a .bin plug-in for .bin models)")
    ap.add_argument("-i", "--instruct", action="store_true", help="wrap the prompt in the instruction template")
    ap.add_argument("-s", "--max_seq_length", type=int, default=None,
                    help="stop when prompt + output reach this many tokens (default: the context length)")
    ap.add_argument("-t", "--temperature", type=float, default=1.0, help="0 = greedy")
    ap.add_argument("-k", "--top_k", type=int, default=0, help="0 = off")
    ap.add_argument("-p", "--top_p", type=float, default=1.0, help="1.0 = off")
    ap.add_argument("-r", "--repetition_penalty", type=float, default=1.0, help="1.0 = off")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="print time to first token and tokens/s")
    ap.add_argument("--prompt", help="generate once for this prompt (otherwise an interactive prompt)")
    ap.add_argument("--device", default="cpu", help="torch device for .pt checkpoints")
    ap.add_argument("--threads", type=int, default=None, help="threads of the Rust engine (.bin)")
    ap.add_argument("--kv-cache", choices=["f32", "f16"], default="f32",
                    help="KV cache element type of the Rust engine (.bin); f16 halves its memory")
    args = ap.parse_args(argv)
    try:
        from nano.sampling import check_options

        check_options(args.temperature, args.top_k, args.top_p, args.repetition_penalty)
        if Path(args.model).suffix == ".bin":
            from nano.engine import Engine

            engine = Engine(args.model, threads=args.threads, kv_cache=args.kv_cache)
            if args.lora:
                engine.load_lora(args.lora)

            def gen(prompt, stats):
                return _bin_stream(engine, prompt, args, stats)
        else:
            model, tokenizer = load_model(args.model, args.lora, args.device)
            opts = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                        repetition_penalty=args.repetition_penalty, seed=args.seed)

            def gen(prompt, stats):
                return stream(model, tokenizer, prompt, max_seq_length=args.max_seq_length,
                              instruct=args.instruct, stats=stats, **opts)

        if args.prompt is not None:
            _answer(gen, args.prompt, args, sys.stdout)
            return 0
        while True:  # REPL
            try:
                prompt = input("> ")
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if prompt.strip() in ("exit", "quit"):
                return 0
            try:
                _answer(gen, prompt, args, sys.stdout)
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"nano.infer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
