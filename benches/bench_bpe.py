"""BPE tokenizer benchmark and 10 MB identity check, against HF ``tokenizers`` and ``tiktoken``.

    pip install tokenizers tiktoken && python benches/bench_bpe.py [--mb 10] [--repeats 5]

For each family (GPT-2, Llama 3 and Qwen2 byte-level BPE; SentencePiece-style BPE with byte
fallback), a vocabulary is trained with HF's trainer (tests/bpe_fixtures.py) and ``--mb`` MB of
deterministic mixed text (the shared corpora when present, Chinese, English, code, emoji, digits,
whitespace runs, odd Unicode) is encoded:

1. identity: Nano's ids against HF's on every document, special tokens allowed and not;
2. speed, one thread, same vocabulary and text: Nano vs HF ``tokenizers`` (``encode`` per
   document, TOKENIZERS_PARALLELISM=false) and ``tiktoken`` (an ``Encoding`` built from the same
   ranks — each token's bytes ranked by its id, which is the merge order of a trained vocabulary —
   and the same pattern; byte-level families only). The three run interleaved, ``--repeats``
   rounds, and the ratios are of medians from this one run.

Known difference: Qwen2's NFC step uses newer Unicode tables than HF's, so runs of recently
assigned combining marks (from the random-BMP pieces of the synthetic text) can be ordered
differently; the script reports such documents instead of hiding them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before tokenizers is imported
os.environ["RAYON_NUM_THREADS"] = "1"

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from bpe_fixtures import FAMILIES, GPT2_REGEX, LLAMA3_REGEX, QWEN2_REGEX, build_fixture, mixed_documents  # noqa: E402
from nano.tokenizer import BpeTokenizer  # noqa: E402

REGEX = {"gpt2": GPT2_REGEX, "llama3": LLAMA3_REGEX, "qwen2": QWEN2_REGEX}


def tiktoken_encoding(ours: BpeTokenizer, family: str):
    import tiktoken

    added = {c: i for c, i, _ in ours._core.added_tokens()}
    ranks = {}
    for i in range(ours.vocab_size):
        token = ours.id_to_token(i)
        if token not in added:
            ranks[ours.decode_bytes([i])] = i
    return tiktoken.Encoding(f"nano-{family}", pat_str=REGEX[family], mergeable_ranks=ranks,
                             special_tokens=added)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=10.0, help="mixed text per family, MB")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--families", default=",".join(FAMILIES))
    args = ap.parse_args()
    import tokenizers

    docs = mixed_documents(int(args.mb * 1e6), seed=2024)
    nbytes = sum(len(d.encode()) for d in docs)
    print(f"text: {len(docs)} documents, {nbytes / 1e6:.2f} MB UTF-8")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            folder = build_fixture(family, Path(tmp) / family)
            ours = BpeTokenizer.from_hf(folder)
            hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
            same = True
            for allow in (True, False):
                hf.encode_special_tokens = not allow
                want = [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)]
                got = ours.encode_batch(docs, allow_special=allow)
                bad = sum(w != g for w, g in zip(want, got, strict=True))
                same &= bad == 0
                print(f"{family}: identity with HF (allow_special={allow}): "
                      f"{'identical' if bad == 0 else f'{bad} documents differ'}"
                      f" ({sum(map(len, got))} ids)")
            failed |= not same
            hf.encode_special_tokens = False

            runs = {
                "nano": lambda ours=ours: [ours.encode(d, allow_special=True) for d in docs],
                "hf": lambda hf=hf: [hf.encode(d, add_special_tokens=False) for d in docs],
            }
            if family in REGEX:
                enc = tiktoken_encoding(ours, family)
                tk = [enc.encode(d, allowed_special="all") for d in docs]
                agree = sum(a == b for a, b in zip(tk, ours.encode_batch(docs, allow_special=True), strict=True))
                print(f"{family}: tiktoken ids equal to Nano's on {agree}/{len(docs)} documents"
                      + (" (Qwen2 normalizes NFC first; tiktoken does not)" if family == "qwen2" else ""))
                runs["tiktoken"] = lambda enc=enc: [enc.encode(d, allowed_special="all") for d in docs]
            times = {k: [] for k in runs}
            names = list(runs)
            for r in range(args.repeats):
                for k in names[r % len(names):] + names[:r % len(names)]:
                    times[k].append(timed(runs[k]))
            med = {k: statistics.median(v) for k, v in times.items()}
            line = ", ".join(f"{k} {nbytes / 1e6 / med[k]:.2f} MB/s" for k in names)
            ratios = ", ".join(f"{med[k] / med['nano']:.2f}× {k}" for k in names if k != "nano")
            print(f"{family}: one thread, median of {args.repeats}: {line}; Nano = {ratios}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
