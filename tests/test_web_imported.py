"""Imported models in the page (headless Chromium): a Qwen2 model from a Hugging Face folder
(`--from-hf`) and the same model as a GGUF file load in the browser's engine, whose chat prompt ids (the
model's own ChatML template, system turn included) and greedy chat answers equal the native engine's."""

from __future__ import annotations

import base64

import pytest
import web_harness as wh

pytest.importorskip("transformers")
pytest.importorskip("gguf")

from test_gguf_load import write_gguf  # noqa: E402
from test_hf_import import MESSAGES, MODELS, _build  # noqa: E402
from test_web_chat import CHAT_IDS  # noqa: E402

MAX_NEW = 8
QUESTIONS = ["Hi 你好 👋", "2 + 2 = ?"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The random-weight Qwen2 of test_hf_import as a q8_0 Nano file and a q8_0 GGUF (q8_0 kernels are
    integer-exact on every instruction set, so the page's greedy answers equal native's)."""
    wh.require_browser_stack()
    from nano.import_hf import import_hf

    root = tmp_path_factory.mktemp("web-imported")
    d, model = _build(root, "qwen2-tied")
    family = MODELS["qwen2-tied"][1]
    return {"qwen.bin": import_hf(d, root / "qwen.bin", "q8_0"),
            "qwen.gguf": write_gguf(d, model, root / "qwen.gguf", family, "q8_0")}


@pytest.mark.parametrize("name", ["qwen.bin", "qwen.gguf"])
def test_imported_model_chats_in_the_page_as_natively(files, name):
    from nano.engine import Engine

    path = files[name]
    engine = Engine(path, threads=1)
    native = [engine.chat_prompt_ids(MESSAGES[: i + 1]) for i in (1, 3)]
    with wh.serve_page() as url, wh.browser_page(url) as (page, _requests):
        wh.open_page(page, url)
        data = path.read_bytes()
        # The worker renders the model's own template (system turn included) into native's ids.
        ids = page.evaluate(CHAT_IDS, [base64.b64encode(data).decode(), [MESSAGES[:2], MESSAGES]])
        assert ids == native
        assert MESSAGES[0]["content"] in engine.render_chat(MESSAGES[:2]) and len(ids[1]) > len(ids[0])

        wh.choose_file(page, "#model-file", name, data)
        wh.set_options(page, max_new_tokens=MAX_NEW)
        page.check("#mode-chat")
        history: list[dict] = []
        for question in QUESTIONS:
            history.append({"role": "user", "content": question})
            shown = wh.send_chat(page, question)
            answer = "".join(engine.chat(history, max_new_tokens=MAX_NEW, temperature=0.0))
            assert answer and shown == answer
            history.append({"role": "assistant", "content": answer})
