"""Throughput and latency of `nano-infer serve` under concurrent streams, and a bounded load test.

Builds a random-weight model of a shape from benches/bench_engine.py (default N56, q8_0; vocabulary of
filler tokens, so no data is needed), starts the server on a loopback port, and for each number of
concurrent streams runs that many clients, each streaming completions of `--tokens` tokens
(`ignore_eos`), and reports aggregate generated tokens/s and time to first token (p50, p99). Prints the
8-stream / 1-stream throughput ratio.

With `--peer`, llama.cpp's `llama-server` (built by scripts/build_llamacpp.sh) serves the same weights as a
GGUF (`--parallel` as Nano's, continuous batching, the same threads) beside Nano's server; for each number
of streams the two are measured in turn, `--reps` times, and the median of the per-round ratios is printed.

    python3 benches/bench_serve.py --streams 1,4,8,16 --threads 2
    python3 benches/bench_serve.py --streams 1,8 --peer --reps 3
    python3 benches/bench_serve.py --load 120 --clients 32      # load test: stops by itself

The load test runs `--clients` clients with random prompts and lengths for `--load` seconds and checks that
no request failed (503s from a full queue are counted, not failures) and that the server's resident memory
after the run is within 5 % of its value after a warm-up; it exits non-zero otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))


def build(shape: str, dtype: str, vocab: int, block: int, out: Path, gguf: bool = False) -> tuple[Path, Path | None]:
    """The model as a Nano file and, with `gguf`, the same weights as a GGUF. Shapes of bench_engine.py, or
    of bench_llamacpp.py (Qwen0.5B: Qwen2.5-0.5B's shape and vocabulary), built as that benchmark builds them."""
    from bench_engine import SHAPES, build_model
    from bench_llamacpp import write_models

    if shape not in SHAPES:
        nano, peer = write_models(shape, [dtype], out.parent, gguf=gguf)[dtype]
        return nano, peer
    from nano.export import export_checkpoint, export_gguf
    from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

    special = list(DEFAULT_SPECIAL_TOKENS)
    # byte tokens, which a GGUF export needs to tokenize as Nano does, then filler words
    tokens = special + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"w{i} " for i in range(vocab - len(tokens))]
    tok = Tokenizer.from_tokens(tokens, [i < len(special) for i in range(vocab)])
    model = build_model(shape, block, vocab)
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    peer = export_gguf(out.with_suffix(".gguf"), checkpoint=ckpt, dtype=dtype) if gguf else None
    return export_checkpoint(ckpt, out, dtype), peer


def llamacpp_tool(name: str) -> Path:
    env = os.environ.get("NANO_LLAMACPP_BIN")
    dirs = [Path(env)] if env else sorted((Path.home() / ".cache" / "nano-llamacpp").glob("*/bin"), reverse=True)
    for d in dirs:
        if (d / name).exists():
            return d / name
    sys.exit(f"{name} not found: run LLAMACPP_SERVER=1 scripts/build_llamacpp.sh (or set NANO_LLAMACPP_BIN)")


class LlamaServer:
    """llama.cpp's server on a free loopback port, ready once /health answers 200."""

    def __init__(self, model: Path, parallel: int, threads: int, block: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        cmd = [str(llamacpp_tool("llama-server")), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
               "--parallel", str(parallel), "-c", str(block * parallel), "-t", str(threads), "-tb", str(threads),
               "--no-webui", "--log-disable"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"llama-server exited with {self.proc.returncode}: {' '.join(cmd)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.close()
        sys.exit("llama-server did not become ready in 120 s")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Server:
    def __init__(self, binary: Path, model: Path, *args: str):
        cmd = [str(binary), "serve", str(model), "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if m is None:
            self.proc.kill()
            sys.exit(f"server did not start: {line}{self.proc.stderr.read()}")
        self.port = int(m.group(1))

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def stream(port: int, prompt: str, tokens: int, seed: int, peer: bool = False) -> tuple[str, float, int]:
    """('ok' | 'busy' | 'failed: ...', seconds to the first token, tokens generated)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"prompt": prompt, "max_tokens": tokens, "stream": True, "ignore_eos": True, "seed": seed}
    if peer:  # llama-server sends `usage` in its last chunk when asked, as OpenAI does
        body["stream_options"] = {"include_usage": True}
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status == 503:
            resp.read()
            return "busy", 0.0, 0
        if resp.status != 200:
            return f"failed: HTTP {resp.status} {resp.read()[:200]!r}", 0.0, 0
        ttft, done, usage = 0.0, False, None
        while line := resp.readline():
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                return f"failed: {chunk['error']}", 0.0, 0
            if not ttft:
                ttft = time.perf_counter() - t0
            usage = chunk.get("usage") or usage
        if not done or usage is None:
            return "failed: stream ended early", 0.0, 0
        return "ok", ttft, usage["completion_tokens"]
    except OSError as e:
        return f"failed: {e}", 0.0, 0
    finally:
        conn.close()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def throughput(port: int, n: int, tokens: int, rounds: int, rng: random.Random,
               peer: bool = False) -> tuple[float, float, float]:
    """(aggregate tokens/s, TTFT p50, TTFT p99) of `n` clients each streaming `rounds` completions."""
    ttfts, total, failures = [], [0], []
    lock = threading.Lock()

    def client(i: int):
        for r in range(rounds):
            prompt = " ".join(f"w{rng.randrange(500)}" for _ in range(16))
            status, ttft, got = stream(port, prompt, tokens, seed=i * 1000 + r, peer=peer)
            with lock:
                if status != "ok":
                    failures.append(status)
                ttfts.append(ttft)
                total[0] += got

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if failures:
        sys.exit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return total[0] / wall, pct(ttfts, 50), pct(ttfts, 99)


def load_test(server: Server, clients: int, seconds: float, block: int) -> int:
    counts = {"ok": 0, "busy": 0}
    failures: list[str] = []
    lock = threading.Lock()

    def client(i: int, until: float):
        rng = random.Random(i)
        while time.monotonic() < until:
            prompt = " ".join(f"w{rng.randrange(2000)}" for _ in range(rng.randrange(1, block // 2)))
            status, _, _ = stream(server.port, prompt, rng.randrange(1, block // 2), seed=rng.randrange(1 << 30))
            with lock:
                if status in counts:
                    counts[status] += 1
                else:
                    failures.append(status)
            if status == "busy":
                time.sleep(1.0)  # the server's Retry-After

    def run(duration: float):
        until = time.monotonic() + duration
        threads = [threading.Thread(target=client, args=(i, until)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run(min(20.0, seconds / 4))  # warm-up: every slot's KV cache grown, allocator settled
    warm = server.rss_kib()
    run(seconds)
    end = server.rss_kib()
    growth = (end - warm) / warm * 100
    print(f"load: {clients} clients, {seconds:.0f} s: {counts['ok']} completed, {counts['busy']} answered 503, "
          f"{len(failures)} failed; RSS {warm / 1024:.1f} MiB after warm-up, {end / 1024:.1f} MiB at the end "
          f"({growth:+.1f} %)")
    for f in failures[:5]:
        print("  failure:", f)
    return 0 if not failures and growth <= 5.0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="N56", help="a shape of bench_engine.py or bench_llamacpp.py (Qwen0.5B)")
    ap.add_argument("--dtype", default="q8_0")
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--block", type=int, default=512)
    ap.add_argument("--streams", default="1,4,8,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64, help="tokens per streamed completion")
    ap.add_argument("--rounds", type=int, default=2, help="completions per client")
    ap.add_argument("--load", type=float, default=0, help="run the load test for this many seconds instead")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--peer", action="store_true", help="measure llama.cpp's llama-server beside Nano's")
    ap.add_argument("--reps", type=int, default=3, help="with --peer: rounds per stream count")
    ap.add_argument("--nano-infer", type=Path, default=ROOT / "target" / "release" / "nano-infer")
    args = ap.parse_args()
    if not args.nano_infer.exists():
        subprocess.run(["cargo", "build", "--release", "--bin", "nano-infer"], cwd=ROOT, check=True)
    streams = [int(s) for s in args.streams.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model, gguf = build(args.shape, args.dtype, args.vocab, args.block, Path(tmp) / "m.bin", args.peer)
        parallel = max(streams) if not args.load else 16
        server = Server(args.nano_infer, model, "--parallel", str(parallel), "--threads", str(args.threads),
                        "--max-queue", "16")
        peer = LlamaServer(gguf, parallel, args.threads, args.block) if gguf else None
        try:
            if args.load:
                return load_test(server, args.clients, args.load, args.block)
            rng = random.Random(0)
            throughput(server.port, 1, 4, 1, rng)  # warm-up
            if peer:
                throughput(peer.port, 1, 4, 1, rng, peer=True)
            print(f"{args.shape} {args.dtype}, {args.threads} threads, {args.tokens} tokens per stream")
            rates = {}
            for n in streams:
                if not peer:
                    rate, p50, p99 = throughput(server.port, n, args.tokens, args.rounds, rng)
                    rates[n] = rate
                    print(f"streams={n:3d}  {rate:8.1f} tok/s  TTFT p50 {p50 * 1000:7.1f} ms  "
                          f"p99 {p99 * 1000:7.1f} ms")
                    continue
                ours, theirs = [], []
                for rep in range(args.reps):  # interleaved, the first to run alternating
                    order = [(server.port, False, ours), (peer.port, True, theirs)]
                    for port, is_peer, out in order[::1 if rep % 2 == 0 else -1]:
                        out.append(throughput(port, n, args.tokens, args.rounds, rng, peer=is_peer))
                rates[n] = statistics.median(r[0] for r in ours)
                ratio = statistics.median(a[0] / b[0] for a, b in zip(ours, theirs, strict=True))
                print(f"streams={n:3d}  Nano {rates[n]:8.1f} tok/s (TTFT p50 "
                      f"{statistics.median(r[1] for r in ours) * 1000:6.1f} ms)  llama-server "
                      f"{statistics.median(r[0] for r in theirs):8.1f} tok/s (TTFT p50 "
                      f"{statistics.median(r[1] for r in theirs) * 1000:6.1f} ms)  Nano/llama-server {ratio:.2f}x")
            if 1 in rates and 8 in rates:
                print(f"8 streams / 1 stream: {rates[8] / rates[1]:.2f}x")
        finally:
            server.close()
            if peer:
                peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
