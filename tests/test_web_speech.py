"""Speech out: the page reads generated answers aloud sentence by sentence while they stream in, each
finished sentence once and in order, only with on-device voices, and stops on Stop. The browser's
speechSynthesis is replaced by a recording stub (headless Chromium has no voices); the sentence splitter
itself is checked under Node on texts streamed in pieces of every size."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import web_harness as wh
from nano.web.server import WEB_DIR

# text -> its sentences, whatever the pieces it streams in
SPLITS = [
    ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
    ("Pi is 3.14 today. Yes", ["Pi is 3.14 today.", "Yes"]),
    ("Wait... what?! ok", ["Wait...", "what?!", "ok"]),
    ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
    ("其为广也，其为怪也。宜其为大也！群山既略", ["其为广也，其为怪也。", "宜其为大也！", "群山既略"]),
    ("他说：“好。”然后走了。", ["他说：“好。”", "然后走了。"]),
    ("等等……好吧。", ["等等……", "好吧。"]),
    ("line one\nline two\n\n", ["line one", "line two"]),
    ("no end", ["no end"]),
    ("", []),
    ("  \n ", []),
]

# A recording speechSynthesis: `window.__spoken` gets {text, voice} per utterance and {cancel: true} per
# cancel. `window.__voices` chooses the voices; `window.__stopAfterFirst` makes the first utterance click
# the page's "Stop speaking" (a listener stopping the voice mid-answer).
STUB = """
(() => {
  const voices = (window.__voices = window.__voices || [
    {name: 'Local A', lang: 'en-US', localService: true, default: true, voiceURI: 'a'},
    {name: 'Remote B', lang: 'en-GB', localService: false, default: false, voiceURI: 'b'},
    {name: 'Local C', lang: 'zh-CN', localService: true, default: false, voiceURI: 'c'},
  ]);
  window.__spoken = [];
  window.__stopAfterFirst = false;
  const synth = {
    getVoices: () => voices,
    speak(u) {
      window.__spoken.push({text: u.text, voice: u.voice ? u.voice.name : null});
      if (window.__stopAfterFirst) {
        window.__stopAfterFirst = false;
        document.getElementById('speech-stop').click();
      }
    },
    cancel() { window.__spoken.push({cancel: true}); },
    pause() {}, resume() {}, speaking: false, pending: false, paused: false,
    addEventListener() {}, removeEventListener() {},
  };
  Object.defineProperty(window, 'speechSynthesis', {value: synth, configurable: true});
  window.SpeechSynthesisUtterance = class { constructor(text) { this.text = text; this.voice = null; } };
})();
"""
REMOTE_ONLY = "window.__voices = [{name: 'Remote B', lang: 'en-GB', localService: false, voiceURI: 'b'}];"

# The page's own splitter over a whole text (what streaming must also give).
SPLIT_WHOLE = """async (text) => {
    const { SentenceSplitter } = await import('./speech.js');
    const s = new SentenceSplitter();
    return [...s.push(text), ...s.finish()];
}"""


def test_sentences_are_the_same_however_the_text_streams_in():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed")
        pytest.skip("node is not installed")
    script = wh.REPO / "tests" / "web" / "speech_split.mjs"
    texts = [text for text, _ in SPLITS]
    proc = subprocess.run([node, str(script), str(WEB_DIR), json.dumps(texts)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for (text, expected), by_size in zip(SPLITS, json.loads(proc.stdout), strict=True):
        assert by_size, text
        for size, sentences in by_size.items():
            assert sentences == expected, (text, size)


@pytest.fixture(scope="module")
def sentences_model(tmp_path_factory):
    """The tiny trained model and a prompt whose greedy continuation holds at least two sentences."""
    wh.require_browser_stack()
    pytest.importorskip("torch")
    paths = wh.train_tiny_model(tmp_path_factory.mktemp("web-speech"))["paths"]
    max_new = 26  # with the 3-token prompt, within the tiny model's context of 32 tokens
    for start in range(len(wh.TEXT) - 3):
        prompt = wh.TEXT[start:start + 3]
        text = wh.native_greedy(paths["f32"], prompt, max_new)
        if text.count("。") >= 2 and not text.endswith("。"):
            return {"model": paths["f32"], "prompt": prompt, "max_new": max_new, "text": text}
    pytest.fail("no prompt of the training text gives a two-sentence continuation")


def spoken(page) -> list[dict]:
    return page.evaluate("() => window.__spoken")


def test_answers_are_read_aloud_sentence_by_sentence_with_a_local_voice(sentences_model):
    m = sentences_model
    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        page.add_init_script(STUB)
        wh.open_page(page, url)
        # Only the on-device voices are offered.
        options = page.locator("#voice option").all_text_contents()
        assert options == ["Local A (en-US)", "Local C (zh-CN)"]
        assert page.is_enabled("#speak") and not page.is_checked("#speak")
        wh.choose_file(page, "#model-file", "tiny.bin", m["model"].read_bytes())
        wh.set_options(page, max_new_tokens=m["max_new"])

        # Off by default: nothing is spoken.
        assert wh.generate(page, m["prompt"])[0] == m["text"]
        assert spoken(page) == []

        page.check("#speak")
        page.select_option("#voice", label="Local C (zh-CN)")
        assert wh.generate(page, m["prompt"])[0] == m["text"]
        sentences = page.evaluate(SPLIT_WHOLE, m["text"])
        assert len(sentences) >= 3 and "".join(sentences) == m["text"]  # two 。 and a tail
        assert spoken(page) == [{"text": s, "voice": "Local C"} for s in sentences]

        # Stopping the voice after the first sentence: that one only, then a cancel, and nothing more of
        # the answer, which itself streams on to the end.
        page.evaluate("() => { window.__spoken = []; window.__stopAfterFirst = true; }")
        assert wh.generate(page, m["prompt"])[0] == m["text"]
        assert spoken(page) == [{"text": sentences[0], "voice": "Local C"}, {"cancel": True}]

        # The next answer is read again; "Stop speaking" afterwards cancels the voice.
        page.evaluate("() => { window.__spoken = []; }")
        wh.generate(page, m["prompt"])
        assert [u["text"] for u in spoken(page)] == sentences
        page.click("#speech-stop")
        assert spoken(page)[-1] == {"cancel": True}

        # Unticked: silent again.
        page.uncheck("#speak")
        page.evaluate("() => { window.__spoken = []; }")
        wh.generate(page, m["prompt"])
        assert spoken(page) == []
        assert requests.failed == []


def test_without_a_local_voice_the_control_says_so(sentences_model):
    m = sentences_model
    with wh.serve_page() as url, wh.browser_page(url) as (page, _requests):
        page.add_init_script(REMOTE_ONLY + STUB)  # one script: the order of several is not defined
        wh.open_page(page, url)
        assert "No voice on this device" in page.text_content("#speech-status")
        assert page.is_disabled("#speak") and page.locator("#voice option").count() == 0
        wh.choose_file(page, "#model-file", "tiny.bin", m["model"].read_bytes())
        wh.set_options(page, max_new_tokens=m["max_new"])
        wh.generate(page, m["prompt"])
        assert spoken(page) == []  # the remote voice is never used


def test_stop_silences_the_voice_and_an_answer_can_be_read_again(tmp_path):
    wh.require_browser_stack()
    pytest.importorskip("torch")
    # Only text tokens win, so a long generation streams text until Stop (see test_web_page's stop test).
    model = wh.random_model(tmp_path / "speech.bin", wh.VOCAB, "q8_0", n_layer=4, n_embd=256, n_head=4,
                            n_hidden=768, block_size=512, text_only=True)
    with wh.serve_page() as url, wh.browser_page(url) as (page, _requests):
        page.add_init_script(STUB)
        wh.open_page(page, url)
        wh.choose_file(page, "#model-file", "speech.bin", model.read_bytes())
        page.check("#speak")

        # The generation's Stop also silences the voice: a cancel, and nothing spoken after it.
        wh.set_options(page, max_new_tokens=400)
        page.fill("#prompt", wh.TEXT[:4])
        page.click("#generate")
        page.wait_for_function("() => document.getElementById('generated').textContent.length > 0")
        page.click("#stop")
        page.wait_for_selector("#generated[data-done='1']", state="attached")
        wh.wait_idle(page)
        assert "(stopped)" in page.text_content("#stats")
        assert spoken(page)[-1] == {"cancel": True}

        # Chat: "Read aloud" on an answer reads all of it, sentence by sentence, with the chosen voice.
        page.uncheck("#speak")
        wh.set_options(page, max_new_tokens=12)
        page.check("#mode-chat")
        answer = wh.send_chat(page, wh.TEXT[:5])
        page.evaluate("() => { window.__spoken = []; }")
        page.click("#conversation li.assistant button.speak")
        sentences = page.evaluate(SPLIT_WHOLE, answer)
        assert answer and spoken(page) == [{"cancel": True}] + [{"text": s, "voice": "Local A"} for s in sentences]
