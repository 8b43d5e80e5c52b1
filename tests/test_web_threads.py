"""The engine's thread team in the page (the shared-memory WASM build, its workers on Web Workers): the page
reports its thread count, greedy text on 2 threads equals 1 thread's and the native engine's (q8_0, q4_0),
the setting is remembered, and a page that is not cross-origin isolated falls back to the single-thread
build and still works. Every request stays on 127.0.0.1 (web_harness.browser_page checks it)."""

from __future__ import annotations

import pytest
import web_harness as wh

PROMPT = wh.TEXT[:4]
MAX_NEW = 24
DTYPES = ("q8_0", "q4_0")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    wh.require_browser_stack()
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("web-threads")
    # Wide enough that every matrix is split over the threads (the kernels keep matrices under 2^15
    # weights on one thread: 256 x 256 and 256 x 768 are above); text_only keeps the greedy text visible.
    return {dtype: wh.random_model(out / f"threads-{dtype}.bin", wh.VOCAB, dtype, n_layer=2, n_embd=256,
                                   n_head=4, n_hidden=768, block_size=128, text_only=True)
            for dtype in DTYPES}


def native(path, threads: int) -> str:
    from nano.engine import Engine

    engine = Engine(path, threads=threads)
    return "".join(engine.generate(PROMPT, max_new_tokens=MAX_NEW, temperature=0.0))


@pytest.fixture(scope="module")
def expected(models):
    """The native engine's greedy texts, which are the same on 1 and 2 threads."""
    texts = {}
    for dtype, path in models.items():
        one, two = native(path, 1), native(path, 2)
        assert one == two and len(one) > 0, dtype
        texts[dtype] = one
    return texts


def set_threads(page, n: int) -> None:
    """Sets the page's thread count; the page starts a fresh engine worker (and reloads the model)."""
    page.fill("#threads", str(n))
    page.dispatch_event("#threads", "change")
    page.wait_for_selector(f"#engine-status[data-threads='{n}']", state="attached")
    wh.wait_idle(page)


def test_two_threads_same_text_as_one_and_native(models, expected):
    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        wh.open_page(page, url)
        assert page.evaluate("() => self.crossOriginIsolated") is True
        assert page.is_enabled("#threads")
        wh.set_options(page, max_new_tokens=MAX_NEW)
        for dtype in DTYPES:
            texts = {}
            for n in (2, 1):
                set_threads(page, n)
                status = page.text_content("#engine-status")
                assert f"{n} thread{'s' if n > 1 else ''}" in status, status
                # Several threads on the shared-memory build; one on the single-thread build.
                assert page.get_attribute("#engine-status", "data-shared") == str(n > 1).lower()
                wh.choose_file(page, "#model-file", f"threads-{dtype}.bin", models[dtype].read_bytes())
                assert wh.page_error(page) == ""
                texts[n] = wh.generate(page, PROMPT)[0]
            assert texts[2] == texts[1] == expected[dtype], dtype
        # A model loaded on 1 thread is loaded again into the fresh 2-thread engine when the setting
        # changes, and the setting is remembered across a reload.
        set_threads(page, 2)
        assert wh.generate(page, PROMPT)[0] == expected[DTYPES[-1]]
        page.reload()
        page.wait_for_selector("#engine-status[data-threads='2']", state="attached")
        assert page.input_value("#threads") == "2"
        assert wh.page_error(page) == ""
        assert requests.off_loopback() == []


def test_not_isolated_falls_back_to_one_thread(models, expected):
    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        wh.strip_isolation(page)
        wh.open_page(page, url)
        assert page.evaluate("() => self.crossOriginIsolated") is False
        assert page.get_attribute("#engine-status", "data-shared") == "false"
        assert page.get_attribute("#engine-status", "data-threads") == "1"
        assert "1 thread" in page.text_content("#engine-status")
        assert not page.is_enabled("#threads")
        wh.set_options(page, max_new_tokens=MAX_NEW)
        wh.choose_file(page, "#model-file", "threads-q8_0.bin", models["q8_0"].read_bytes())
        assert wh.generate(page, PROMPT)[0] == expected["q8_0"]
        assert wh.page_error(page) == ""
        assert requests.off_loopback() == []
