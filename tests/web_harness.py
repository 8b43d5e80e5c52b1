"""Shared by the browser tests and benches/bench_wasm.py: serve the page, drive Debian's headless Chromium
through Playwright, and make small model files with the project's own trainer and exporter."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts" / "web"
VOCAB = REPO / "python" / "nano" / "corpus" / "chinese_classic_vocab.json"
# From the built-in corpus; every character is in its vocabulary.
TEXT = "于廓灵海，长为委输。其为广也，其为怪也，宜其为大也。群山既略，百川潜渫。江河既导，万穴俱流，掎拔五岳，竭涸九州。"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--metrics-recording-only",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    from nano.web.server import WEB_DIR, has_wasm

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright is not installed (pip install playwright; never `playwright install`)"
    if chromium_path() is None:
        return "chromium is not installed (apt-get install chromium)"
    if not has_wasm():
        return f"the WASM package is not built in {WEB_DIR / 'pkg'} (scripts/build_wasm.sh)"
    return None


def require_browser_stack() -> None:
    """Skips the calling test when Chromium, Playwright or the WASM package is missing; fails it under CI."""
    import pytest

    why = missing_requirements()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {why} (.ci/setup-wasm.sh should have set it up)")
        pytest.skip(why)


@contextlib.contextmanager
def serve_page(models_dir: Path | None = None) -> Iterator[str]:
    """The installed page on a free loopback port (offering the model files of `models_dir`, if given);
    yields its base URL."""
    from nano.web.server import make_server

    server = make_server("127.0.0.1", 0, quiet=True, models_dir=models_dir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class RequestLog:
    """Every request the browser makes (page and workers); anything not on the page's origin is blocked."""

    def __init__(self, base_url: str):
        self.origin = urllib.parse.urlsplit(base_url).netloc
        self.urls: list[str] = []
        self.blocked: list[str] = []
        self.failed: list[str] = []  # "STATUS URL" of every answer >= 400 (a missing file, a refusal)

    def route(self, route) -> None:
        url = route.request.url
        self.urls.append(url)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != self.origin:
            self.blocked.append(url)
            route.abort()
        else:
            route.continue_()

    def off_loopback(self) -> list[str]:
        bad = []
        for url in self.urls + self.blocked:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme in ("data", "blob"):
                continue
            if parts.hostname != "127.0.0.1":
                bad.append(url)
        return bad


@contextlib.contextmanager
def browser_page(base_url: str) -> Iterator[tuple[object, RequestLog]]:
    """A fresh headless Chromium page (Debian's binary) with a request log; the page is not opened yet."""
    from playwright.sync_api import sync_playwright

    log = RequestLog(base_url)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900}, service_workers="block")
            context.route("**/*", log.route)
            context.on("request", lambda r: None if r.url in log.urls else log.urls.append(r.url))
            context.on("response", lambda r: log.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page = context.new_page()
            page.set_default_timeout(60_000)
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.console_log = console  # type: ignore[attr-defined]
            yield page, log
            # Every browser test: no request left the page's origin (the route above blocks and records them).
            assert log.blocked == [], f"requests left the page's origin: {log.blocked}"
            assert log.off_loopback() == [], log.off_loopback()
        finally:
            browser.close()


def strip_isolation(page) -> None:
    """Serves the page to `page` without COOP/COEP, so it is not cross-origin isolated (no
    SharedArrayBuffer, no shared WASM memory). Call before opening the page."""
    def route(route):
        response = route.fetch()
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("cross-origin-opener-policy", "cross-origin-embedder-policy")}
        route.fulfill(response=response, headers=headers)

    page.route("**/*", route)


def open_page(page, base_url: str) -> str:
    """Loads the page and waits for the engine's worker; returns the version the page shows."""
    page.goto(base_url)
    page.wait_for_selector("#engine-status[data-version]")
    return page.get_attribute("#engine-status", "data-version")


# Waits use selectors, not JavaScript predicates: the page's CSP forbids string evaluation.
def wait_idle(page) -> None:
    page.wait_for_selector("body[data-state='idle']", state="attached")


def choose_file(page, selector: str, name: str, data: bytes) -> None:
    page.set_input_files(selector, files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}])
    # The change handler locks the controls at once; wait for the request to finish.
    wait_idle(page)


def set_options(page, *, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                repetition_penalty: float = 1.0, seed: int = 0, instruct: bool = False) -> None:
    page.fill("#temperature", str(temperature))
    page.fill("#top-k", str(top_k))
    page.fill("#top-p", str(top_p))
    page.fill("#repetition-penalty", str(repetition_penalty))
    page.fill("#max-tokens", str(max_new_tokens))
    page.fill("#seed", str(seed))
    page.check("#mode-instruct" if instruct else "#mode-continue")


def generate(page, prompt: str) -> tuple[str, dict]:
    """Clicks Generate and waits for the end; returns (generated text, {'tokens_per_sec': ...})."""
    page.fill("#prompt", prompt)
    page.click("#generate")
    page.wait_for_selector("#generated[data-done='1']", state="attached")
    wait_idle(page)
    error = page.text_content("#error") if page.is_visible("#error") else ""
    if error:
        raise AssertionError(f"the page reported an error: {error}")
    rate = page.get_attribute("#speed", "data-tokens-per-sec")
    return page.text_content("#generated"), {"tokens_per_sec": float(rate) if rate else 0.0}


def send_chat(page, text: str) -> str:
    """Sends a chat message and waits for the whole answer; returns the answer as the page shows it."""
    turns = int(page.get_attribute("#conversation", "data-turns") or 0)
    page.fill("#prompt", text)
    page.click("#generate")
    return wait_answer(page, turns + 2)


def wait_answer(page, turns: int) -> str:
    """Waits until the conversation has `turns` turns, the last a finished answer; returns its text."""
    page.wait_for_selector(f"#conversation[data-turns='{turns}'] li.assistant:last-child[data-done='1']",
                           state="attached")
    wait_idle(page)
    error = page_error(page)
    if error:
        raise AssertionError(f"the page reported an error: {error}")
    return page.text_content("#conversation li.assistant:last-child .text")


def page_error(page) -> str:
    return page.text_content("#error") if page.is_visible("#error") else ""


def train_tiny_model(out_dir: Path, steps: int = 40) -> dict:
    """A tiny model trained by nano.train.run, exported as f32 and q8_0 .bin files, plus a LoRA plug-in.

    Returns paths {"f32", "q8_0", "lora", "checkpoint"} and the tokenizer.
    """
    import torch
    from helpers import repeat_loader
    from nano.export import export_checkpoint, export_lora
    from nano.infer import load_model
    from nano.lora import LoraConfig, apply_lora, lora_modules, save_lora
    from nano.tokenizer import Tokenizer
    from nano.train import run

    torch.manual_seed(0)
    tok = Tokenizer.from_file(str(VOCAB))
    ids = tok.encode(TEXT)
    x = torch.tensor([ids[:33], ids[8:41]])
    model = dict(block_size=32, vocab_size=tok.vocab_size, n_layer=2, n_embd=64, n_head=4, n_kv_head=2,
                 n_hidden=128)
    cfg = dict(save_checkpoint_to=str(out_dir / "run"), batch_size=2, max_iters=steps, learning_rate=2e-2,
               warmup_iters=0, eval_interval=100_000, log_interval=1000, progress=False, tensorboard=False,
               device="cpu", dtype="float32")
    result = run(model, cfg, train_loader=repeat_loader(x), tokenizer=tok, log=False)
    ckpt = result["checkpoint"]
    paths = {"checkpoint": Path(ckpt)}
    paths["f32"] = export_checkpoint(ckpt, out_dir / "tiny-f32.bin", dtype="f32")
    paths["q8_0"] = export_checkpoint(ckpt, out_dir / "tiny-q8_0.bin", dtype="q8_0")

    # A LoRA plug-in with clearly non-zero adapters, so it visibly changes the greedy text.
    torch_model, _ = load_model(ckpt)
    apply_lora(torch_model, LoraConfig(rank=4, alpha=8))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in lora_modules(torch_model).values():
            m.lora_A.copy_(torch.randn(m.lora_A.shape, generator=gen) * 0.5)
            m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=gen) * 0.5)
    lora_pt = save_lora(torch_model, out_dir / "lora.pt")
    paths["lora"] = export_lora(lora_pt, out_dir / "lora.bin")
    return {"paths": paths, "tokenizer": tok}


def native_greedy(model_path: Path, prompt: str, max_new_tokens: int, lora: Path | None = None) -> str:
    """What the native Rust engine (nano.Engine, one thread) generates greedily for the prompt."""
    from nano.engine import Engine

    engine = Engine(model_path, threads=1)
    if lora is not None:
        engine.load_lora(lora)
    return "".join(engine.generate(prompt, max_new_tokens=max_new_tokens, temperature=0.0))


def random_model(out: Path, vocab: Path, dtype: str = "f32", *, n_layer: int = 6, n_embd: int = 288,
                 n_head: int = 6, n_hidden: int = 768, block_size: int = 256, never_eos: bool = False,
                 text_only: bool = False) -> Path:
    """A randomly initialised model exported as .bin (for speed and stop tests: the values do not matter).

    ``never_eos`` zeroes the <|eos|> embedding (the head is tied), so its logit is 0 while the largest
    logit is positive: greedy decoding then never ends early by itself. ``text_only`` zeroes every special
    token's embedding the same way, so greedy decoding only ever picks (visible) text tokens.
    """
    import torch
    from nano.export import export_checkpoint
    from nano.model import ModelConfig, Transformer
    from nano.tokenizer import Tokenizer

    tok = Tokenizer.from_file(str(vocab))
    config = ModelConfig.from_dict(dict(vocab_size=tok.vocab_size, block_size=block_size, n_layer=n_layer,
                                        n_embd=n_embd, n_head=n_head, n_kv_head=n_head, n_hidden=n_hidden))
    torch.manual_seed(0)
    model = Transformer(config)
    silent = list(tok.special_tokens.values()) if text_only else []
    if never_eos:
        silent.append(tok.token_to_id("<|eos|>"))
    with torch.no_grad():
        for token_id in silent:
            model.tok_embeddings.weight[token_id] = 0.0
    ckpt = {"format": "nano-checkpoint", "version": 1, "model": model.state_dict(), "step": 0,
            "model_config": config.to_dict(), "tokenizer_json": tok.to_json(), "tokenizer_hash": tok.hash}
    return export_checkpoint(ckpt, out, dtype=dtype)


def nano_infer_binary() -> Path | None:
    """The native `nano-infer` program: the newest one cargo built in this checkout's target dir (fresh in
    CI, where `cargo test` builds it), else one on PATH."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    built = [p for p in (target / "release" / "nano-infer", target / "debug" / "nano-infer")
             if p.is_file() and os.access(p, os.X_OK)]
    if built:
        return max(built, key=lambda p: p.stat().st_mtime)
    found = shutil.which("nano-infer")
    return Path(found) if found else None


def cli_greedy(binary: Path, model_path: Path, prompt: str, max_new_tokens: int, lora: Path | None = None) -> str:
    """What `nano-infer MODEL --prompt P -t 0` prints (the text, without the final newline)."""
    import subprocess

    cmd = [str(binary), str(model_path), "--prompt", prompt, "-n", str(max_new_tokens), "-t", "0", "-k", "0",
           "-p", "1", "-r", "1", "--threads", "1", "-q"]
    if lora is not None:
        cmd += ["-l", str(lora)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"nano-infer failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.removesuffix("\n")
