"""The browser page in a real headless Chromium (Debian's), driven by Playwright, and the WASM engine
under Node: same greedy text as the native engine, LoRA on/off, corrupt files, requests stay on
127.0.0.1, kernels bit-exact with native. A screenshot goes to artifacts/web/screenshot.png."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest
import web_harness as wh
from nano.web.server import WEB_DIR

PROMPT = wh.TEXT[:3]
MAX_NEW = 24


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    wh.require_browser_stack()
    pytest.importorskip("torch")
    return wh.train_tiny_model(tmp_path_factory.mktemp("web-model"))["paths"]


@pytest.fixture(scope="module")
def expected(models):
    """The native engine's greedy texts (the reference the page must reproduce exactly)."""
    base = wh.native_greedy(models["f32"], PROMPT, MAX_NEW)
    with_lora = wh.native_greedy(models["f32"], PROMPT, MAX_NEW, lora=models["lora"])
    assert len(base) > 0
    assert with_lora != base, "the test LoRA must change the greedy text"
    # ... which is also exactly what the `nano-infer` program prints, when it is built here.
    binary = wh.nano_infer_binary()
    if binary is not None:
        assert wh.cli_greedy(binary, models["f32"], PROMPT, MAX_NEW) == base
        assert wh.cli_greedy(binary, models["f32"], PROMPT, MAX_NEW, lora=models["lora"]) == with_lora
    return {"base": base, "lora": with_lora}


PANEL_PATHS = {"scalar-panels", "simd128-panels"}  # the panel layout on the build's panel kernels


def _assert_golden(paths: list[dict], expected: list[str], minus128: dict) -> None:
    assert expected == ["3713210ab7f7c23c", "6c9c4d7254253610"]  # as pinned by the native kernel tests
    names = {p["path"] for p in paths}
    assert names - PANEL_PATHS == {"scalar", "simd128"}, paths  # the build has SIMD128
    assert len(names & PANEL_PATHS) == 1, paths
    for p in paths:
        assert [p["q8_0"], p["q4_0"]] == expected, p
    # q8_0 weights of -128 (the relaxed kernels' slow exact branch): same bits as the scalar reference.
    assert minus128["rows"] == minus128["scalar"] == minus128["panels"], minus128


def test_node_kernels_bit_exact_and_engine(models, expected):
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed")
        pytest.skip("node is not installed")
    script = wh.REPO / "tests" / "web" / "node_check.mjs"
    proc = subprocess.run(
        [node, str(script), str(WEB_DIR / "pkg"), str(models["q8_0"]), PROMPT, str(MAX_NEW)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # The native kernel tests' golden hashes (nano_infer::kernels::selftest), on every wasm32 kernel path.
    _assert_golden(out["golden"], out["goldenExpected"], out["minus128"])
    # q8_0 kernels are integer-exact, so the wasm text equals native's for the quantized model too.
    assert out["greedy"]["text"] == wh.native_greedy(models["q8_0"], PROMPT, MAX_NEW)
    assert out["greedy"]["interrupted"] is False
    assert out["interrupt"] == {"generated": 1, "interrupted": True}
    assert "invalid model file" in out["corrupt"] or "model" in out["corrupt"].lower()


def test_page_end_to_end(models, expected):
    from nano import _native

    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        version = wh.open_page(page, url)
        assert version == _native.__version__

        # Kernel golden hashes inside the browser's worker too, on all four builds: the relaxed-SIMD one
        # (what this Chromium loads by default) and the plain SIMD128 one (other browsers), each with
        # shared memory (what an isolated page loads for several threads) and single-threaded (one
        # thread, or a page that is not isolated).
        for query, build, shared in (("?threads=2", "relaxed-simd", True),
                                     ("?threads=2&simd=simd128", "simd128", True),
                                     ("", "relaxed-simd", False), ("?simd=simd128", "simd128", False)):
            reply = page.evaluate(
                """(query) => new Promise((resolve, reject) => {
                    const w = new Worker('worker.js' + query, {type: 'module'});
                    let simd = null, shared = null;
                    w.onmessage = (e) => {
                        if (e.data.type === 'ready') {
                            ({simd, shared} = e.data);
                            w.postMessage({id: 1, type: 'golden'});
                        } else if (e.data.type === 'fatal') reject(new Error(e.data.message));
                        else if (e.data.id === 1) { w.terminate(); resolve({simd, shared, ...e.data}); }
                    };
                    w.onerror = (e) => reject(new Error(e.message));
                })""",
                query,
            )
            assert (reply["simd"], reply["shared"]) == (build, shared)
            got = json.loads(reply["got"])
            _assert_golden(got, reply["expected"], json.loads(reply["minus128"]))
            # The relaxed build multiplies panels with its own kernels (what model loading then uses);
            # the plain build has none and keeps the row layout.
            panel_path = "simd128-panels" if build == "relaxed-simd" else "scalar-panels"
            assert panel_path in {p["path"] for p in got}, got
        assert page.get_attribute("#engine-status", "data-simd") == "relaxed-simd"

        # A corrupt file before any model: a clear error, and the page keeps working.
        wh.choose_file(page, "#model-file", "corrupt.bin", b"NANO" + bytes(range(256)) * 4)
        assert "cannot load corrupt.bin" in wh.page_error(page)
        assert page.is_disabled("#generate")

        wh.choose_file(page, "#model-file", "tiny-f32.bin", models["f32"].read_bytes())
        assert wh.page_error(page) == ""
        assert page.get_attribute("#model-info", "data-loaded") == "tiny-f32.bin"

        wh.set_options(page, max_new_tokens=MAX_NEW)
        text, stats = wh.generate(page, PROMPT)
        assert text == expected["base"]
        assert stats["tokens_per_sec"] > 0

        # A truncated model file is refused; the loaded model stays and still generates the same text.
        truncated = models["f32"].read_bytes()[: models["f32"].stat().st_size // 2]
        wh.choose_file(page, "#model-file", "truncated.bin", truncated)
        assert "cannot load truncated.bin" in wh.page_error(page)
        assert page.get_attribute("#model-info", "data-loaded") == "tiny-f32.bin"
        assert wh.generate(page, PROMPT)[0] == expected["base"]

        # LoRA plug-in: the output changes to native-with-LoRA, and returns after unloading.
        wh.choose_file(page, "#lora-file", "lora.bin", models["lora"].read_bytes())
        assert wh.page_error(page) == ""
        assert page.get_attribute("#lora-info", "data-loaded") == "lora.bin"
        assert wh.generate(page, PROMPT)[0] == expected["lora"]
        page.click("#lora-unload")
        wh.wait_idle(page)
        assert page.get_attribute("#lora-info", "data-loaded") is None
        assert wh.generate(page, PROMPT)[0] == expected["base"]

        # q8_0 on the relaxed-SIMD build: integer-exact kernels, so exactly native's greedy text.
        wh.choose_file(page, "#model-file", "tiny-q8_0.bin", models["q8_0"].read_bytes())
        assert wh.page_error(page) == ""
        assert wh.generate(page, PROMPT)[0] == wh.native_greedy(models["q8_0"], PROMPT, MAX_NEW)
        wh.choose_file(page, "#model-file", "tiny-f32.bin", models["f32"].read_bytes())
        assert wh.page_error(page) == ""

        # A model file given as a LoRA is refused with a reason.
        wh.choose_file(page, "#lora-file", "not-a-lora.bin", models["f32"].read_bytes())
        assert "cannot load the LoRA not-a-lora.bin" in wh.page_error(page)

        # Sampled generation with the same seed is reproducible (the spec's SplitMix64 RNG).
        wh.set_options(page, max_new_tokens=MAX_NEW, temperature=1.0, top_k=20, top_p=0.9, seed=7)
        first = wh.generate(page, PROMPT)[0]
        assert wh.generate(page, PROMPT)[0] == first

        # Instruction mode runs (the template is the engine's).
        wh.set_options(page, max_new_tokens=8, instruct=True)
        wh.generate(page, PROMPT)
        assert page.text_content("#output-prompt").startswith("Q: ")

        wh.set_options(page, max_new_tokens=MAX_NEW)
        wh.generate(page, PROMPT)
        wh.ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(wh.ARTIFACTS / "screenshot.png"), full_page=True)

        assert not [m for m in page.console_log if m.startswith(("error", "pageerror"))], page.console_log
        assert requests.urls, "no request was recorded"
        for name in ("nano_wasm_mt_relaxed_bg.wasm", "nano_wasm_mt_bg.wasm", "nano_wasm_relaxed_bg.wasm",
                     "nano_wasm_bg.wasm"):
            assert any(u.endswith(f"/pkg/{name}") for u in requests.urls), (name, requests.urls)
        assert requests.off_loopback() == []
        assert requests.failed == []
    assert (wh.ARTIFACTS / "screenshot.png").stat().st_size > 10_000


def test_drop_a_model_and_bad_settings_are_reported(models):
    from playwright.sync_api import expect

    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        wh.open_page(page, url)
        # Drag and drop a model file onto the page.
        page.evaluate(
            """(b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], 'dropped.bin'));
                document.getElementById('drop-zone').dispatchEvent(
                    new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
            }""",
            base64.b64encode(models["f32"].read_bytes()).decode(),
        )
        page.wait_for_selector("#model-info[data-loaded='dropped.bin']", state="attached")
        wh.wait_idle(page)
        page.fill("#temperature", "-1")
        page.fill("#prompt", PROMPT)
        page.click("#generate")
        expect(page.locator("#error")).to_contain_text("temperature")
        page.fill("#temperature", "0")
        page.fill("#seed", "1.5")
        page.click("#generate")
        expect(page.locator("#error")).to_contain_text("seed")
        assert requests.off_loopback() == []


def test_stop_button_interrupts(tmp_path):
    wh.require_browser_stack()
    pytest.importorskip("torch")
    # Big enough that 400 tokens take a while even on a fast machine; only text tokens win (no eos, no
    # silent special tokens), so only Stop ends early and text shows from the first token on.
    model = wh.random_model(tmp_path / "stop.bin", wh.VOCAB, "q8_0", n_layer=4, n_embd=256, n_head=4,
                            n_hidden=768, block_size=512, text_only=True)
    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        wh.open_page(page, url)
        assert page.evaluate("() => self.crossOriginIsolated") is True  # COOP/COEP: the shared stop flag
        wh.choose_file(page, "#model-file", "stop.bin", model.read_bytes())
        wh.set_options(page, max_new_tokens=400)
        page.fill("#prompt", wh.TEXT[:4])
        page.click("#generate")
        page.wait_for_selector("body[data-state='generating']", state="attached")
        page.wait_for_function("() => document.getElementById('generated').textContent.length > 0")
        assert page.is_enabled("#stop") and page.is_disabled("#generate")
        page.click("#stop")
        page.wait_for_selector("#generated[data-done='1']", state="attached")
        wh.wait_idle(page)
        stats = page.text_content("#stats")
        assert "(stopped)" in stats, stats
        generated = int(stats.split(" tokens generated")[0])
        assert 1 <= generated < 400
        assert wh.page_error(page) == ""
        # The engine is still usable after the stop.
        wh.set_options(page, max_new_tokens=5)
        text, _ = wh.generate(page, wh.TEXT[:4])
        assert len(text) > 0

        # Stop in chat mode: the partial answer stays in the conversation, marked stopped.
        wh.set_options(page, max_new_tokens=400)
        page.check("#mode-chat")
        page.fill("#prompt", wh.TEXT[:4])
        page.click("#generate")
        page.wait_for_function(
            "() => (document.querySelector('#conversation li.assistant .text')?.textContent || '').length > 0")
        page.click("#stop")
        page.wait_for_selector("#conversation li.assistant[data-done='1'][data-stopped='1']", state="attached")
        wh.wait_idle(page)
        assert page.get_attribute("#conversation", "data-turns") == "2"
        assert "(stopped)" in page.text_content("#stats")
        assert page.is_visible("#conversation li.assistant button.regenerate")
        assert requests.off_loopback() == []


def test_stop_without_cross_origin_isolation_restarts_the_worker(tmp_path):
    """Served without COOP/COEP (no SharedArrayBuffer), Stop ends the worker and reloads the model."""
    wh.require_browser_stack()
    pytest.importorskip("torch")
    model = wh.random_model(tmp_path / "stop.bin", wh.VOCAB, "q8_0", n_layer=4, n_embd=256, n_head=4,
                            n_hidden=768, block_size=512, text_only=True)
    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        wh.strip_isolation(page)
        wh.open_page(page, url)
        assert page.evaluate("() => self.crossOriginIsolated") is False
        wh.choose_file(page, "#model-file", "stop.bin", model.read_bytes())
        wh.set_options(page, max_new_tokens=8)
        reference, _ = wh.generate(page, wh.TEXT[:4])
        wh.set_options(page, max_new_tokens=400)
        page.fill("#prompt", wh.TEXT[:4])
        page.click("#generate")
        page.wait_for_function("() => document.getElementById('generated').textContent.length > 0")
        page.click("#stop")
        page.wait_for_selector("#generated[data-done='1']", state="attached")
        partial = page.text_content("#generated")
        assert 0 < len(partial) < 400
        # A fresh worker has the model again: the same greedy text as before the stop.
        page.wait_for_selector("#engine-status[data-version]", state="attached")
        wh.set_options(page, max_new_tokens=8)
        assert wh.generate(page, wh.TEXT[:4])[0] == reference
        assert wh.page_error(page) == ""

        # Chat mode too: the answer stopped by the restart keeps its text, marked stopped.
        wh.set_options(page, max_new_tokens=400)
        page.check("#mode-chat")
        page.fill("#prompt", wh.TEXT[:4])
        page.click("#generate")
        page.wait_for_function(
            "() => (document.querySelector('#conversation li.assistant .text')?.textContent || '').length > 0")
        page.click("#stop")
        page.wait_for_selector("#conversation li.assistant[data-done='1'][data-stopped='1']", state="attached")
        page.wait_for_selector("#engine-status[data-version]", state="attached")
        wh.wait_idle(page)
        assert page.get_attribute("#conversation", "data-turns") == "2"
        assert wh.page_error(page) == ""
        assert requests.off_loopback() == []
