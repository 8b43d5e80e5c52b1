"""Remembered models in headless Chromium: a picked model and LoRA are stored in the browser (the Origin
Private File System, or Cache Storage where that is missing), survive a reload, load from the list with
the same greedy text as native, and are freed by Delete; quota errors are reported. Also the server's
model folder (`--models DIR`), listed in the page and loaded by `?model=NAME`."""

from __future__ import annotations

import hashlib

import pytest
import web_harness as wh

PROMPT = wh.TEXT[:3]
MAX_NEW = 16

# Every file in the origin's private file system, as "dir/sub/name".
LIST_OPFS = """async () => {
    const out = [];
    const walk = async (dir, prefix) => {
        for await (const h of dir.values()) {
            if (h.kind === 'file') out.push(prefix + h.name);
            else await walk(h, prefix + h.name + '/');
        }
    };
    await walk(await navigator.storage.getDirectory(), '');
    return out.sort();
}"""
LIST_CACHES = """async () => {
    const out = [];
    for (const name of await caches.keys())
        for (const r of await (await caches.open(name)).keys()) out.push(new URL(r.url).pathname);
    return out.sort();
}"""
OPFS_SHA256 = """async (path) => {
    let dir = await navigator.storage.getDirectory();
    const parts = path.split('/');
    for (const p of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(p);
    const file = await (await dir.getFileHandle(parts.at(-1))).getFile();
    const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}"""
USAGE = "async () => (await navigator.storage.estimate()).usage"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    wh.require_browser_stack()
    pytest.importorskip("torch")
    paths = wh.train_tiny_model(tmp_path_factory.mktemp("web-storage"))["paths"]
    base = wh.native_greedy(paths["f32"], PROMPT, MAX_NEW)
    with_lora = wh.native_greedy(paths["f32"], PROMPT, MAX_NEW, lora=paths["lora"])
    assert base and with_lora != base
    return {**paths, "base": base, "with_lora": with_lora}


def stored(page, count: int) -> list[tuple[str, str, int]]:
    """Waits for the page's list of remembered files to show `count` entries; returns (kind, name, size) of
    the entries it shows (the caller's assertion then names what differs)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(f"#stored-list[data-count='{count}']", state="attached", timeout=20_000)
    except PlaywrightTimeout:
        pass
    return [(li.get_attribute("data-kind"), li.get_attribute("data-name"), int(li.get_attribute("data-size")))
            for li in page.query_selector_all("#stored-list li")]


def click_stored(page, kind: str, action: str) -> None:
    page.click(f"#stored-list li[data-kind='{kind}'] button.{action}")
    wh.wait_idle(page)


def test_a_model_and_lora_survive_a_reload_and_delete_frees_them(models):
    f32, lora = models["f32"], models["lora"]
    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        wh.open_page(page, url)
        assert stored(page, 0) == []
        assert page.get_attribute("#stored-list", "data-store") == "the browser's private file system"
        wh.choose_file(page, "#model-file", "tiny-f32.bin", f32.read_bytes())
        wh.choose_file(page, "#lora-file", "lora.bin", lora.read_bytes())
        assert wh.page_error(page) == ""
        assert stored(page, 2) == [("lora", "lora.bin", lora.stat().st_size),
                                   ("model", "tiny-f32.bin", f32.stat().st_size)]
        assert page.evaluate(LIST_OPFS) == ["nano/lora/lora.bin", "nano/model/tiny-f32.bin"]
        assert page.evaluate(OPFS_SHA256, "nano/model/tiny-f32.bin") == hashlib.sha256(f32.read_bytes()).hexdigest()
        # A corrupt file is not remembered (only files that loaded are).
        wh.choose_file(page, "#model-file", "corrupt.bin", b"NANO" + bytes(64))
        assert "cannot load corrupt.bin" in wh.page_error(page)
        assert len(stored(page, 2)) == 2

        # After a reload nothing is loaded, and the list loads both without picking them again.
        page.reload()
        page.wait_for_selector("#engine-status[data-version]")
        assert len(stored(page, 2)) == 2
        assert page.get_attribute("#model-info", "data-loaded") is None
        assert page.is_disabled("#stored-list li[data-kind='lora'] button.load")  # no model yet
        click_stored(page, "model", "load")
        assert page.get_attribute("#model-info", "data-loaded") == "tiny-f32.bin"
        wh.set_options(page, max_new_tokens=MAX_NEW)
        assert wh.generate(page, PROMPT)[0] == models["base"]
        click_stored(page, "lora", "load")
        assert page.get_attribute("#lora-info", "data-loaded") == "lora.bin"
        assert wh.generate(page, PROMPT)[0] == models["with_lora"]

        # Delete frees them: gone from the list and from the file system, and the usage drops.
        before = page.evaluate(USAGE)
        click_stored(page, "model", "delete")
        assert stored(page, 1) == [("lora", "lora.bin", lora.stat().st_size)]
        assert page.evaluate(LIST_OPFS) == ["nano/lora/lora.bin"]
        click_stored(page, "lora", "delete")
        assert stored(page, 0) == []
        assert page.evaluate(LIST_OPFS) == []
        assert page.evaluate(USAGE) < before
        assert "Nothing remembered yet." in page.text_content("#stored-status")
        assert wh.page_error(page) == ""

        # With "remember" unticked a loaded file is not stored.
        page.uncheck("#remember")
        wh.choose_file(page, "#model-file", "tiny-f32.bin", f32.read_bytes())
        assert page.get_attribute("#model-info", "data-loaded") == "tiny-f32.bin"
        assert stored(page, 0) == [] and page.evaluate(LIST_OPFS) == []
        assert requests.failed == []


def test_cache_storage_is_used_where_the_file_system_is_missing(models):
    f32 = models["f32"]
    with wh.serve_page() as url, wh.browser_page(url) as (page, _requests):
        page.add_init_script("delete StorageManager.prototype.getDirectory;")
        wh.open_page(page, url)
        assert stored(page, 0) == []
        assert page.get_attribute("#stored-list", "data-store") == "the browser's cache storage"
        wh.choose_file(page, "#model-file", "tiny f32.bin", f32.read_bytes())
        assert stored(page, 1) == [("model", "tiny f32.bin", f32.stat().st_size)]
        page.reload()
        page.wait_for_selector("#engine-status[data-version]")
        assert len(stored(page, 1)) == 1
        click_stored(page, "model", "load")
        assert page.get_attribute("#model-info", "data-loaded") == "tiny f32.bin"
        wh.set_options(page, max_new_tokens=MAX_NEW)
        assert wh.generate(page, PROMPT)[0] == models["base"]
        assert page.evaluate(LIST_CACHES) == ["/remembered/model/tiny%20f32.bin"]
        click_stored(page, "model", "delete")
        assert stored(page, 0) == [] and page.evaluate(LIST_CACHES) == []


def test_a_full_storage_is_reported_and_leaves_nothing_behind(models):
    with wh.serve_page() as url, wh.browser_page(url) as (page, _requests):
        # Every write fails as it does when the origin's quota is used up.
        page.add_init_script("""FileSystemWritableFileStream.prototype.write = function () {
            return Promise.reject(new DOMException('The quota has been exceeded.', 'QuotaExceededError'));
        };""")
        wh.open_page(page, url)
        stored(page, 0)
        wh.choose_file(page, "#model-file", "tiny-f32.bin", models["f32"].read_bytes())
        error = wh.page_error(page)
        assert "not enough browser storage to remember tiny-f32.bin" in error, error
        assert "free" in error
        # The model itself loaded and works; nothing half-written is left in storage.
        assert page.get_attribute("#model-info", "data-loaded") == "tiny-f32.bin"
        assert stored(page, 0) == [] and page.evaluate(LIST_OPFS) == []
        wh.set_options(page, max_new_tokens=MAX_NEW)
        assert wh.generate(page, PROMPT)[0] == models["base"]


def test_a_file_larger_than_the_room_left_is_not_written(models):
    with wh.serve_page() as url, wh.browser_page(url) as (page, _requests):
        # The browser reports 1000 bytes of room: the page refuses before writing anything.
        page.add_init_script("""StorageManager.prototype.estimate = async () => ({usage: 500, quota: 1500});
            FileSystemWritableFileStream.prototype.write = function () {
                window.__wrote = true;
                return Promise.reject(new Error('written although there is no room'));
            };""")
        wh.open_page(page, url)
        stored(page, 0)
        wh.choose_file(page, "#model-file", "tiny-f32.bin", models["f32"].read_bytes())
        error = wh.page_error(page)
        assert "not enough browser storage to remember tiny-f32.bin" in error and "1.0 kB free" in error, error
        assert page.evaluate("() => window.__wrote === undefined")
        assert page.get_attribute("#model-info", "data-loaded") == "tiny-f32.bin"
        assert stored(page, 0) == [] and page.evaluate(LIST_OPFS) == []


def test_the_servers_model_folder_is_listed_and_loads_by_url(models, tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "tiny-f32.bin").write_bytes(models["f32"].read_bytes())
    (folder / "notes.txt").write_text("not a model")
    with wh.serve_page(models_dir=folder) as url, wh.browser_page(url) as (page, requests):
        page.goto(url + "?model=tiny-f32.bin")
        page.wait_for_selector("#model-info[data-loaded='tiny-f32.bin']", state="attached")
        wh.wait_idle(page)
        assert page.get_attribute("#served-list", "data-count") == "1"
        assert page.get_attribute("#served-list li", "data-name") == "tiny-f32.bin"
        assert stored(page, 0) == []  # a served model is not copied into the browser
        wh.set_options(page, max_new_tokens=MAX_NEW)
        assert wh.generate(page, PROMPT)[0] == models["base"]

        page.goto(url + "?model=..%2Fnotes.txt")
        page.wait_for_selector("#engine-status[data-version]")
        page.wait_for_selector("#error:not([hidden])")
        assert "this server has no model named ../notes.txt" in wh.page_error(page)
        assert page.get_attribute("#model-info", "data-loaded") is None
        page.click("#served-list li[data-name='tiny-f32.bin'] button.load")
        page.wait_for_selector("#model-info[data-loaded='tiny-f32.bin']", state="attached")
        assert requests.failed == []
