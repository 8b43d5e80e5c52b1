"""WASM decode speed in headless Chromium vs the native engine, at 1 and 2 threads, same model, same run.

    python benches/bench_wasm.py [--dtypes f32,q8_0] [--threads 1,2] [--tokens 128] [--repeats 3]
                                 [--shape default|wide|tiny] [--small]

Builds a randomly initialised Llama-style model (speed does not depend on the weights' values; ~11M
parameters like the original project's smallest model, ~57M besides the embeddings with --shape wide, or a
tiny one with --small), exports it with nano.export, then measures greedy decoding: the page in Debian's
headless Chromium (the WASM engine in its Web Worker, the relaxed-SIMD build where Chromium validates it,
else SIMD128; the page is cross-origin isolated, so for 2+ threads the shared-memory build with its
thread team on Web Workers, for one thread the single-thread build), one page per thread count, and nano.Engine(threads=N) (the native build). Runs alternate (native
and page, every thread count, round after round) so load changes on a shared machine hit all alike; the
first round warms up and is not counted. Decode tokens/s = (generated - 1) / time from the first new token
to the last, median of the repeats; prints page/native at each thread count and each side's
N-thread/1-thread speed-up. On a busy machine wall-clock rates swing with the load, so it also prints
tokens per CPU second (native: this process's CPU time; WASM: Chromium's DedicatedWorker threads, from
/proc). Spinning team workers count as CPU time on both sides. Each round also runs the engine's Web
Worker driven directly, without the page's UI ("engine worker alone": no text streamed into the document,
nothing rendered), which separates the engine from what the page's own work takes from the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import web_harness as wh  # noqa: E402

PROMPT = wh.TEXT[:8]


# Model shapes (random_model's defaults are 6 layers x 288); "wide" has ~8x the work per token, so that
# handing each matrix to the threads costs less beside it.
SHAPES = {
    "tiny": (dict(n_layer=2, n_embd=64, n_head=4, n_hidden=192), "tiny"),
    "default": ({}, "6 layers x 288, ~11M parameters"),
    "wide": (dict(n_layer=8, n_embd=768, n_head=12, n_hidden=2048), "8 layers x 768, ~57M parameters besides the embeddings"),
}


def bench_model(out_dir: Path, dtype: str, shape: str) -> Path:
    shared_vocab = REPO.parent / "shared" / "data" / "tokenizer_16384.json"
    vocab = shared_vocab if shared_vocab.exists() and shape != "tiny" else wh.VOCAB
    dims, described = SHAPES[shape]
    path = wh.random_model(out_dir / f"bench-{dtype}.bin", vocab, dtype, **dims)
    print(f"model: {path.name} ({described}), vocabulary {vocab.name}, {path.stat().st_size / 2**20:.1f} MiB",
          flush=True)
    return path


def native_run(engine, tokens: int) -> tuple[float, float, int]:
    """(decode tokens/s by wall clock, generated tokens per CPU second, generated tokens)."""
    cpu0 = time.process_time()  # the engine's one worker thread; Python only waits for pieces
    it = engine.generate(PROMPT, max_new_tokens=tokens, temperature=0.0)
    for _piece in it:
        pass
    cpu = time.process_time() - cpu0
    generated, secs = int(it.stats["generated_tokens"]), float(it.stats["decode_secs"])
    return ((generated - 1) / secs if generated > 1 and secs > 0 else 0.0), generated / cpu, generated


def worker_cpu_secs() -> float:
    """CPU seconds used so far by Chromium's Web Worker threads (where the WASM engine runs): the
    scheduler's nanosecond run time (/proc/.../schedstat) where available, else utime + stime in clock
    ticks (10 ms steps: too coarse for short runs). Threads may exit while being read: skipped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            task = Path("/proc", pid, "task", tid)
            try:
                if not (task / "comm").read_text().startswith("DedicatedWorker"):
                    continue
                try:
                    total += int((task / "schedstat").read_text().split()[0]) / 1e9
                except (OSError, IndexError, ValueError):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
    return total


def load_in_page(page, path: Path, tokens: int, threads: int) -> None:
    page.fill("#threads", str(threads))
    page.dispatch_event("#threads", "change")
    page.wait_for_selector(f"#engine-status[data-threads='{threads}']", state="attached")
    wh.wait_idle(page)
    page.set_input_files("#model-file", files=[str(path)])
    wh.wait_idle(page)
    error = wh.page_error(page)
    if error:
        raise SystemExit(f"the page could not load {path.name}: {error}")
    wh.set_options(page, max_new_tokens=tokens)


# The engine's Web Worker driven directly from a page's script, without the page's UI (no text streamed into
# the document, no rendering): `key` names one worker of `threads` threads, started and given the model
# (fetched from `url`) on first use; each call generates greedily and returns the decode tok/s.
WORKER_RUN = """async ([key, threads, url, prompt, tokens]) => {
    const all = (self.benchWorkers ??= {});
    let e = all[key];
    if (!e) {
        const w = new Worker('worker.js?threads=' + threads, {type: 'module'});
        const waiting = new Map();
        let next = 1, ready;
        const started = new Promise((res) => { ready = res; });
        w.onmessage = ({data}) => {
            if (data.type === 'ready') return ready();
            const p = waiting.get(data.id);
            if (!p || data.type === 'piece') return;
            waiting.delete(data.id);
            data.type === 'ok' ? p.res(data) : p.rej(new Error(data.message));
        };
        const ask = (msg) => new Promise((res, rej) => {
            const id = next++;
            waiting.set(id, {res, rej});
            w.postMessage({...msg, id});
        });
        e = all[key] = {ask};
        await started;
        await ask({type: 'load', bytes: await (await fetch(url)).arrayBuffer()});
    }
    const options = {maxNewTokens: tokens, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0,
                     instruct: false};
    return (await e.ask({type: 'generate', prompt, options})).stats.decodeTokensPerSec;
}"""


# Resolves once the page has finished generating. A MutationObserver, not Playwright's waiting for a
# selector, which polls on every animation frame: on a machine with two cores the frames it makes the page
# render would take a core from the engine's threads.
WAIT_DONE = """() => new Promise((resolve) => {
    const done = () => document.querySelector("#generated[data-done='1']") && document.body.dataset.state === 'idle';
    if (done()) return resolve();
    const seen = new MutationObserver(() => { if (done()) { seen.disconnect(); resolve(); } });
    seen.observe(document.body, {attributes: true, subtree: true});
})"""


def page_generate(page) -> tuple[str, float]:
    """Generates in the page (its Generate button); returns the text and the decode tok/s it shows."""
    page.fill("#prompt", PROMPT)
    page.click("#generate")
    page.evaluate(WAIT_DONE)
    error = wh.page_error(page)
    if error:
        raise SystemExit(f"the page reported an error: {error}")
    return page.text_content("#generated"), float(page.get_attribute("#speed", "data-tokens-per-sec") or 0)


def measure(pages: dict, path: Path, tokens: int, repeats: int, model_url: str) -> dict:
    """Rounds of one run per (side, thread count), in turn; the first round warms up and is not counted.
    Also checks that every run produced the native one-thread greedy text."""
    from nano.engine import Engine

    engines = {n: Engine(path, threads=n) for n in pages}
    for n, page in pages.items():
        load_in_page(page, path, tokens, n)
    runs: dict[str, list[float]] = {}
    reference = "".join(engines[min(engines)].generate(PROMPT, max_new_tokens=tokens, temperature=0.0))
    same, generated = True, 0
    for _ in range(repeats + 1):
        for n, page in pages.items():
            rate, per_cpu, generated = native_run(engines[n], tokens)
            runs.setdefault(f"native{n}", []).append(rate)
            runs.setdefault(f"native{n}_cpu", []).append(per_cpu)
            cpu0 = worker_cpu_secs()
            text, rate = page_generate(page)
            cpu = worker_cpu_secs() - cpu0
            runs.setdefault(f"wasm{n}", []).append(rate)
            runs.setdefault(f"wasm{n}_cpu", []).append(generated / cpu if cpu > 0 else float("nan"))
            key = f"{path.name}-{n}"
            runs.setdefault(f"worker{n}", []).append(page.evaluate(WORKER_RUN, [key, n, model_url, PROMPT, tokens]))
            same = same and text == reference
    return {"medians": {k: statistics.median(v[1:]) for k, v in runs.items()}, "generated": generated,
            "same": same}


def ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="f32,q8_0")
    parser.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="default", help="the model's shape")
    parser.add_argument("--small", action="store_true", help="the tiny shape (quick smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    why = wh.missing_requirements()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    counts = sorted({int(n) for n in args.threads.split(",")})

    results = []
    print(f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, "
          f"{os.cpu_count()} logical CPUs")
    with (tempfile.TemporaryDirectory() as tmp, wh.serve_page(Path(tmp)) as url,
          wh.browser_page(url) as (page, log)):
        pages = {counts[0]: page}
        for n in counts[1:]:
            pages[n] = page.context.new_page()
            pages[n].set_default_timeout(60_000)
        for p in pages.values():
            version = wh.open_page(p, url)
        simd = page.get_attribute("#engine-status", "data-simd")
        print(f"WASM engine {version} ({simd} build) in {wh.chromium_path()} (headless); "
              "native nano.Engine(threads=N)")
        if not page.evaluate("() => self.crossOriginIsolated") and counts != [1]:
            raise SystemExit("the page is not cross-origin isolated: it cannot run several threads")
        for dtype in args.dtypes.split(","):
            path = bench_model(Path(tmp), dtype, "tiny" if args.small else args.shape)
            m = measure(pages, path, args.tokens, args.repeats, f"{url}models/{path.name}")
            med = m["medians"]
            row = {"dtype": dtype, "generated_tokens": m["generated"], "same_text": m["same"], **med}
            one = counts[0]
            for n in counts:
                row[f"page_over_native{n}"] = ratio(med[f"wasm{n}"], med[f"native{n}"])
                row[f"page_speedup{n}"] = ratio(med[f"wasm{n}"], med[f"wasm{one}"])
                row[f"native_speedup{n}"] = ratio(med[f"native{n}"], med[f"native{one}"])
                print(f"{dtype:>5} {n}T: decode tok/s (wall)  page {med[f'wasm{n}']:8.1f}  "
                      f"native {med[f'native{n}']:8.1f}  page/native {row[f'page_over_native{n}']:.2f}  "
                      f"{n}T/{one}T page {row[f'page_speedup{n}']:.2f} native {row[f'native_speedup{n}']:.2f}\n"
                      f"          tokens per CPU-s    page {med[f'wasm{n}_cpu']:8.1f}  "
                      f"native {med[f'native{n}_cpu']:8.1f}\n"
                      f"          engine worker alone {med[f'worker{n}']:8.1f}  "
                      f"worker/native {ratio(med[f'worker{n}'], med[f'native{n}']):.2f}  "
                      f"{n}T/{one}T {ratio(med[f'worker{n}'], med[f'worker{one}']):.2f}", flush=True)
            print(f"       ({m['generated']} tokens, median of {args.repeats}, same text everywhere: {m['same']})",
                  flush=True)
            results.append(row)
        off = log.off_loopback()
        if off:
            print(f"warning: requests left 127.0.0.1: {off}", file=sys.stderr)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
