"""WASM decode speed in headless Chromium vs the native engine on one thread, same model, same run.

    python benches/bench_wasm.py [--dtypes f32,q8_0] [--tokens 128] [--repeats 3] [--small]

Builds a randomly initialised Llama-style model (speed does not depend on the weights' values; ~15M
parameters like the original project's smallest model, or a tiny one with --small), exports it with
nano.export, then measures greedy decoding: the page in Debian's headless Chromium (the WASM engine in
its Web Worker, SIMD128, one thread) and nano.Engine(threads=1) (the native build). Decode tokens/s =
(generated - 1) / time from the first new token to the last, median of the repeats; prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import web_harness as wh  # noqa: E402

PROMPT = wh.TEXT[:8]


def bench_model(out_dir: Path, dtype: str, small: bool) -> Path:
    shared_vocab = REPO.parent / "shared" / "data" / "tokenizer_16384.json"
    vocab = shared_vocab if shared_vocab.exists() and not small else wh.VOCAB
    dims = dict(n_layer=2, n_embd=64, n_head=4, n_hidden=192) if small else {}
    path = wh.random_model(out_dir / f"bench-{dtype}.bin", vocab, dtype, **dims)
    print(f"model: {path.name} ({'tiny' if small else '6 layers x 288, ~11M parameters'}), "
          f"vocabulary {vocab.name}, {path.stat().st_size / 2**20:.1f} MiB", flush=True)
    return path


def native_run(engine, tokens: int) -> tuple[float, int]:
    it = engine.generate(PROMPT, max_new_tokens=tokens, temperature=0.0)
    for _piece in it:
        pass
    generated, secs = int(it.stats["generated_tokens"]), float(it.stats["decode_secs"])
    return ((generated - 1) / secs if generated > 1 and secs > 0 else 0.0), generated


def load_in_page(page, path: Path, tokens: int) -> None:
    page.set_input_files("#model-file", files=[str(path)])
    wh.wait_idle(page)
    error = wh.page_error(page)
    if error:
        raise SystemExit(f"the page could not load {path.name}: {error}")
    wh.set_options(page, max_new_tokens=tokens)


def measure(page, path: Path, tokens: int, repeats: int) -> tuple[list[float], list[float], int, bool]:
    """Alternates native and WASM runs (so load changes on a shared machine hit both alike); the first
    pair warms up and is not counted. Also checks that both produced the same greedy text."""
    from nano.engine import Engine

    engine = Engine(path, threads=1)
    load_in_page(page, path, tokens)
    native, wasm, generated = [], [], 0
    for _ in range(repeats + 1):
        rate, generated = native_run(engine, tokens)
        native.append(rate)
        wasm.append(wh.generate(page, PROMPT)[1]["tokens_per_sec"])
    same = wh.generate(page, PROMPT)[0] == "".join(engine.generate(PROMPT, max_new_tokens=tokens, temperature=0.0))
    return native[1:], wasm[1:], generated, same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="f32,q8_0")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a tiny model (quick smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    why = wh.missing_requirements()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2

    results = []
    with tempfile.TemporaryDirectory() as tmp, wh.serve_page() as url, wh.browser_page(url) as (page, log):
        version = wh.open_page(page, url)
        print(f"WASM engine {version} in {wh.chromium_path()} (headless); native nano.Engine(threads=1)")
        for dtype in args.dtypes.split(","):
            path = bench_model(Path(tmp), dtype, args.small)
            native, wasm, generated, same = measure(page, path, args.tokens, args.repeats)
            row = {
                "dtype": dtype,
                "generated_tokens": generated,
                "same_text": same,
                "wasm_tok_s": statistics.median(wasm),
                "native_1t_tok_s": statistics.median(native),
            }
            row["ratio"] = row["wasm_tok_s"] / row["native_1t_tok_s"] if row["native_1t_tok_s"] else 0.0
            results.append(row)
            print(f"{dtype:>5}: WASM {row['wasm_tok_s']:8.1f} tok/s   native 1 thread {row['native_1t_tok_s']:8.1f} "
                  f"tok/s   WASM/native = {row['ratio']:.2f}   ({generated} tokens, median of {args.repeats}, "
                  f"same text: {same})",
                  flush=True)
        off = log.off_loopback()
        if off:
            print(f"warning: requests left 127.0.0.1: {off}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
