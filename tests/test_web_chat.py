"""The page's chat mode in headless Chromium: the conversation the page sends is rendered by the engine
into exactly the prompt ids `nano.Engine.chat_prompt_ids` gives natively, the answers are native's greedy
answers, and regenerate / edit / copy / clear / stop behave. Screenshots at desktop and phone sizes."""

from __future__ import annotations

import base64

import pytest
import web_harness as wh

MAX_NEW = 10
# Three user turns from the built-in corpus (every character is in the test vocabulary).
QUESTIONS = [wh.TEXT[:5], wh.TEXT[5:11], wh.TEXT[11:18]]

# Records the conversation of every chat request the page posts to its worker (the test's window on what
# the UI sends; the page itself is unchanged).
RECORD_CHAT = """
window.__chatSent = [];
const post = Worker.prototype.postMessage;
Worker.prototype.postMessage = function (msg, ...rest) {
  if (msg && msg.type === 'chat') window.__chatSent.push(JSON.parse(JSON.stringify(msg.messages)));
  return post.call(this, msg, ...rest);
};
"""

# Asks a fresh worker of the page for the prompt ids of each conversation (the engine's chatIds request).
CHAT_IDS = """([b64, conversations]) => new Promise((resolve, reject) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
    const w = new Worker('worker.js', {type: 'module'});
    const ids = [];
    w.onmessage = (e) => {
        const m = e.data;
        if (m.type === 'ready') return w.postMessage({id: 0, type: 'load', bytes}, [bytes]);
        if (m.type === 'fatal' || m.type === 'error') return reject(new Error(m.message));
        if (m.id > 0) ids.push(m.ids);
        if (m.id < conversations.length) w.postMessage({id: m.id + 1, type: 'chatIds', messages: conversations[m.id]});
        else { w.terminate(); resolve(ids); }
    };
})"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    wh.require_browser_stack()
    pytest.importorskip("torch")
    # Random weights are enough (the proof is the prompt ids and native-equal answers); q8_0 kernels are
    # integer-exact, so the page's greedy answers equal native's; a context of 256 holds three turns.
    # Only text tokens win, so every answer is visible text of MAX_NEW tokens.
    return wh.random_model(tmp_path_factory.mktemp("chat") / "chat-q8_0.bin", wh.VOCAB, "q8_0", n_layer=2,
                           n_embd=64, n_head=4, n_hidden=128, block_size=256, text_only=True)


def native_answer(engine, messages) -> str:
    return "".join(engine.chat(messages, max_new_tokens=MAX_NEW, temperature=0.0))


def no_horizontal_overflow(page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page is wider than the window: {width}"


def test_three_turn_chat_matches_the_native_engine(model, tmp_path):
    from nano.engine import Engine

    engine = Engine(model, threads=1)
    with wh.serve_page() as url, wh.browser_page(url) as (page, _requests):
        page.add_init_script(RECORD_CHAT)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
        wh.open_page(page, url)
        wh.choose_file(page, "#model-file", "chat.bin", model.read_bytes())
        wh.set_options(page, max_new_tokens=MAX_NEW)
        page.check("#mode-chat")
        assert page.is_hidden("#output") and page.is_visible("#conversation")
        assert page.text_content("#generate") == "Send"

        # Three turns: each answer is native's greedy answer to the conversation so far.
        expected: list[dict] = []
        for question in QUESTIONS:
            expected.append({"role": "user", "content": question})
            shown = wh.send_chat(page, question)
            answer = native_answer(engine, expected)
            assert answer and shown == answer
            expected.append({"role": "assistant", "content": answer})
        sent = page.evaluate("() => window.__chatSent")
        assert sent == [expected[:1], expected[:3], expected[:5]]
        assert page.locator("#conversation li.user .text").all_text_contents() == QUESTIONS

        # The proof: the worker's prompt ids for what the UI sent equal the native engine's.
        ids = page.evaluate(CHAT_IDS, [base64.b64encode(model.read_bytes()).decode(), sent])
        native = [engine.chat_prompt_ids(messages) for messages in sent]
        assert ids == native
        assert len(native[2]) > len(native[1]) > len(native[0]) > 0
        assert page.get_attribute("#stats", "data-prompt-tokens") == str(len(native[2]))

        page.set_viewport_size({"width": 1200, "height": 900})
        page.screenshot(path=str(tmp_path / "chat-desktop.png"), full_page=True)
        no_horizontal_overflow(page)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(tmp_path / "chat-phone.png"), full_page=True)
        no_horizontal_overflow(page)
        assert page.is_visible("#conversation li.assistant:last-child button.regenerate")

        # Only the last answer can be regenerated and only the last question edited.
        assert page.locator("#conversation button.regenerate:visible").count() == 1
        assert page.locator("#conversation button.edit:visible").count() == 1
        assert page.locator("#conversation button.copy:visible").count() == 3

        # Copy puts the answer's text on the clipboard.
        page.locator("#conversation li.assistant button.copy").first.click()
        page.wait_for_selector("#conversation li.assistant button.copy[data-copied='1']", state="attached")
        assert page.evaluate("() => navigator.clipboard.readText()") == expected[1]["content"]

        # Regenerate: the same conversation is sent again and the greedy answer comes back unchanged.
        page.click("#conversation li.assistant:last-child button.regenerate")
        assert wh.wait_answer(page, 6) == expected[5]["content"]
        assert page.evaluate("() => window.__chatSent")[-1] == expected[:5]

        # Edit: the last question returns to the box (its answer goes); a changed question is answered.
        page.click("#conversation button.edit:visible")
        assert page.get_attribute("#conversation", "data-turns") == "4"
        assert page.input_value("#prompt") == QUESTIONS[2]
        changed = wh.TEXT[20:26]
        shown = wh.send_chat(page, changed)
        edited = expected[:4] + [{"role": "user", "content": changed}]
        assert page.evaluate("() => window.__chatSent")[-1] == edited
        assert shown == native_answer(engine, edited)

        # Clear: an empty conversation; the next message starts a new one.
        page.click("#chat-clear")
        assert page.locator("#conversation li").count() == 0
        assert page.is_disabled("#chat-clear")
        assert wh.send_chat(page, QUESTIONS[0]) == expected[1]["content"]
        assert page.evaluate("() => window.__chatSent")[-1] == expected[:1]

        # A conversation the context cannot hold is refused with the engine's reason; the message
        # goes back to the box and the conversation is unchanged.
        page.fill("#prompt", wh.TEXT * 6)
        page.click("#generate")
        wh.wait_idle(page)
        assert "longer than the context" in wh.page_error(page)
        assert "clear the chat" in wh.page_error(page)
        assert page.input_value("#prompt") == wh.TEXT * 6
        assert page.get_attribute("#conversation", "data-turns") == "2"

        # Continuation mode is still there, unchanged by the chat.
        page.check("#mode-continue")
        assert page.is_visible("#output") and page.is_hidden("#conversation")
        assert page.text_content("#generate") == "Generate"
        assert not [m for m in page.console_log if m.startswith(("error", "pageerror"))], page.console_log
    for name in ("chat-desktop.png", "chat-phone.png"):
        assert (tmp_path / name).stat().st_size > 10_000
