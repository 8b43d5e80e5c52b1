"""Tokenizer benchmark: encode MB/s and compactness, against peers measured in the same run.

    pip install '.[bench]' && python benches/bench_tokenizer.py [--mb 50] [--repeats 3]

Speed: the shared Chinese corpora repeated to ``--mb`` MB, encoded with the reference vocabulary by
Nano (1 thread, 2 threads, all threads) and, on samples sized to run a few seconds, by
(a) the clean-room pure-Python maximum-forward-match reference (tests/mfm_reference.py),
(b) Hugging Face ``tokenizers`` byte-level BPE trained on the same corpora to 16,384 entries
    (one thread: TOKENIZERS_PARALLELISM=false), and
(c) jieba word segmentation (``jieba.lcut``, HMM off).
Medians of ``--repeats`` runs; the printed ratios compare figures from this same run.

Compactness: tokens per character on held-out text (the last 10% of each shared corpus) for the
reference vocabulary, a 16,384-entry vocabulary built by ``Tokenizer.build`` from the other 90%,
and the byte-level BPE trained on the same 90%.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # before tokenizers is imported

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from mfm_reference import ReferenceMFM  # noqa: E402
from nano.tokenizer import Tokenizer, read_corpus  # noqa: E402

CHINESE = ["pretrain_psycho.txt", "pretrain_amateur_radio.txt", "pretrain_chinese_classic.txt"]
ALL = [*CHINESE, "sft_amateur_radio.jsonl", "sft_self_id.jsonl"]
VOCAB_SIZE = 16384


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mb_per_s(text: str, seconds: float) -> float:
    return len(text.encode("utf-8")) / 1e6 / seconds


def train_bpe(texts: list[str]):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    hf.train_from_iterator((line for t in texts for line in t.split("\n")), trainer=trainer)
    return hf


def hf_token_count(hf, text: str) -> int:
    return sum(len(e.ids) for e in hf.encode_batch(text.split("\n")))


def split_held_out(data: Path, fraction: float = 0.1):
    train, held = [], []
    for name in ALL:
        text = read_corpus(data / name)
        cut = text.rfind("\n", 0, int(len(text) * (1 - fraction)))
        cut = cut if cut > 0 else int(len(text) * (1 - fraction))
        train.append(text[:cut])
        held.append(text[cut:])
    return train, held


def speed(data: Path, mb: float, repeats: int, built: Tokenizer | None) -> None:
    tok = Tokenizer.from_file(data / "tokenizer_16384.json")
    base = "".join(read_corpus(data / n) for n in CHINESE)
    text = base * max(1, int(mb * 1e6 / len(base.encode("utf-8")) + 0.999))
    cores = os.cpu_count() or 1
    print(f"corpus: {len(text.encode('utf-8')) / 1e6:.1f} MB ({len(text):,} chars), {cores} cores visible")

    rows = {}
    tok.encode(text[:100_000])  # warm up (and let Python cache the text's UTF-8 form)

    def to_numpy(threads):
        return lambda: tok.encode_to_numpy([text], threads=threads)

    # NumPy output is the bulk path (no per-token Python objects); lists are shown for contrast.
    rows["nano -> numpy, 1 thread"] = mb_per_s(text, median_time(to_numpy(1), repeats))
    rows["nano -> numpy, 2 threads"] = mb_per_s(text, median_time(to_numpy(2), repeats))
    rows["nano -> numpy, all threads"] = mb_per_s(text, median_time(to_numpy(None), repeats))
    rows["nano -> list, 1 thread"] = mb_per_s(text, median_time(lambda: tok.encode(text, threads=1), repeats))
    lines = text.split("\n")
    rows["nano batch of lines -> numpy, 1 thread"] = mb_per_s(
        text, median_time(lambda: tok.encode_to_numpy(lines, threads=1), repeats))
    if built is not None:
        built.encode_to_numpy([text[:100_000]])
        rows["nano (built 16k vocab) -> numpy, 1 thread"] = mb_per_s(
            text, median_time(lambda: built.encode_to_numpy([text], threads=1), repeats))

    sample = base[:1_000_000]
    ref = ReferenceMFM.from_json_file(data / "tokenizer_16384.json")
    rows["(a) Python reference MFM"] = mb_per_s(sample, median_time(lambda: ref.encode(sample), repeats))

    try:
        import jieba

        jieba.setLogLevel(60)
        jieba.lcut(sample[:1000], HMM=False)  # loads its dictionary
        rows["(c) jieba lcut"] = mb_per_s(sample, median_time(lambda: jieba.lcut(sample, HMM=False), repeats))
    except ImportError:
        print("jieba not installed: pip install '.[bench]'")

    try:
        t0 = time.perf_counter()
        hf = train_bpe([read_corpus(data / n) for n in CHINESE])
        print(f"HF BPE trained to {hf.get_vocab_size()} entries in {time.perf_counter() - t0:.1f} s")
        hf_lines = base.split("\n")
        rows["(b) HF tokenizers BPE, 1 thread"] = mb_per_s(
            base, median_time(lambda: hf.encode_batch(hf_lines), repeats))
    except ImportError:
        print("tokenizers not installed: pip install '.[bench]'")

    one = rows["nano -> numpy, 1 thread"]
    print(f"\n{'encoder':44s} {'MB/s':>9s} {'nano 1-thread speed ÷ this':>28s}")
    for name, value in rows.items():
        print(f"{name:44s} {value:9.1f} {one / value:27.1f}×")
    print(f"\nthread scaling: 2 threads / 1 thread = {rows['nano -> numpy, 2 threads'] / one:.2f}×, "
          f"all / 1 = {rows['nano -> numpy, all threads'] / one:.2f}×")
    # On a shared machine wall-clock scaling says little; MB per CPU-second shows the parallel
    # overhead (equal figures mean n free cores would give about n× the speed).
    for threads in (1, 2):
        t0, c0 = time.perf_counter(), time.process_time()
        to_numpy(threads)()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"threads={threads}: {mb_per_s(text, cpu):.1f} MB per CPU-second "
              f"(CPU time / wall time = {cpu / wall:.2f})")


def compactness(data: Path) -> Tokenizer:
    train, held = split_held_out(data)
    held_zh = "\n".join(held)  # all shared corpora are Chinese
    ref = Tokenizer.from_file(data / "tokenizer_16384.json")
    t0 = time.perf_counter()
    built = Tokenizer.build_from_texts(train, VOCAB_SIZE)
    print(f"\nbuilt {built.vocab_size} entries in {time.perf_counter() - t0:.1f} s: {built.build_report}")
    print(f"held-out text: {len(held_zh):,} chars (last 10% of each shared corpus)")
    print(f"{'vocabulary':44s} {'tokens/char':>11s}")
    print(f"{'reference tokenizer_16384.json':44s} {ref.stats(held_zh)['tokens_per_char']:11.4f}")
    print(f"{'nano build, 16384, 90% of the corpora':44s} {built.stats(held_zh)['tokens_per_char']:11.4f}")
    for name, h in zip(ALL, held, strict=True):
        print(f"  {name:42s} {built.stats(h)['tokens_per_char']:11.4f}")
    try:
        hf = train_bpe(train)
        print(f"{'HF byte-level BPE, 16384, same 90%':44s} {hf_token_count(hf, held_zh) / len(held_zh):11.4f}")
    except ImportError:
        print("tokenizers not installed: pip install '.[bench]'")
    return built


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--mb", type=float, default=50.0, help="corpus size for the Nano runs")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-compactness", action="store_true")
    args = p.parse_args()
    if not (args.data / "tokenizer_16384.json").exists():
        print(f"shared data not found at {args.data} (use --data)")
        return 1
    built = None if args.skip_compactness else compactness(args.data)
    if not args.skip_speed:
        speed(args.data, args.mb, args.repeats, built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
