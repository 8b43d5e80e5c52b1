"""``nano.Engine.chat``: OpenAI-style messages rendered with the model's chat template (Nano's instruction
template), checked against the template rendered and encoded independently, against the instruction
template assembled turn by turn, and against ``nano-infer -i`` keeping the history across turns."""

from __future__ import annotations

import pytest
from helpers import filler_tokenizer, tiny_model
from nano import _native
from nano.tokenizer import CHAT_TEMPLATE, EOS, instruction_ids, render_chat_template

pytest.importorskip("torch")

THREE_TURNS = [
    {"role": "user", "content": "t1t2t3"},
    {"role": "assistant", "content": "t40t41"},
    {"role": "user", "content": "t5"},
    {"role": "assistant", "content": "t6t7t8t9"},
    {"role": "user", "content": "t10t11"},
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from nano.engine import Engine
    from nano.export import export_checkpoint

    tok = filler_tokenizer(96)
    model = tiny_model(vocab_size=96)
    ckpt = {"tokenizer_json": tok.to_json(), "model_config": model.config.to_dict(), "model": model.state_dict()}
    path = export_checkpoint(ckpt, tmp_path_factory.mktemp("chat") / "m.bin")
    return Engine(path, threads=1)


def test_the_template_has_one_owner(engine):
    from nano.export_gguf import CHAT_TEMPLATE as exported

    assert engine.chat_template == CHAT_TEMPLATE == _native.CHAT_TEMPLATE == exported


def test_three_turns_are_the_rendered_template_encoded(engine):
    tok = engine.tokenizer
    ids = engine.chat_prompt_ids(THREE_TURNS)
    # the template rendered by nano.tokenizer and encoded with the marks as special tokens
    text = render_chat_template(CHAT_TEMPLATE, THREE_TURNS, add_generation_prompt=True)
    assert ids == tok.encode(text, allow_special=True)
    # ... which is the instruction template of each question, each answer ending with <|eos|>
    want: list[int] = []
    for m in THREE_TURNS:
        if m["role"] == "user":
            want += instruction_ids(tok, tok.encode(m["content"]))
        else:
            want += [*tok.encode(m["content"]), tok.token_to_id(EOS)]
    assert ids == want
    # one question alone is the instruction mode of generate()
    assert engine.chat_prompt_ids(THREE_TURNS[:1]) == engine.prompt_ids("t1t2t3", instruct=True)


def test_chat_streams_the_answer_generate_gives_for_the_same_ids(engine):
    opts = dict(max_new_tokens=6, temperature=0.7, top_k=20, seed=3)
    answer = engine.chat(THREE_TURNS, **opts)
    text = "".join(answer)
    assert text == "".join(engine.generate(engine.chat_prompt_ids(THREE_TURNS), **opts))
    assert answer.stats["prompt_tokens"] == len(engine.chat_prompt_ids(THREE_TURNS))


def test_system_turns_are_left_out_of_the_instruction_template(engine):
    """Nano's template has no place for a system turn and renders nothing for it, in every engine and in
    llama.cpp / transformers running the exported template; the other turns' ids are unchanged."""
    system = {"role": "system", "content": "t3t3"}
    developer = {"role": "developer", "content": "t2"}
    with_system = [system, *THREE_TURNS[:2], developer, *THREE_TURNS[2:]]
    assert engine.chat_prompt_ids(with_system) == engine.chat_prompt_ids(THREE_TURNS)


@pytest.mark.parametrize(("messages", "error", "match"), [
    ([], ValueError, "at least one message"),
    ([{"role": "assistant", "content": "t1"}], ValueError, "alternate"),
    ([{"role": "system", "content": "t1"}], ValueError, "last chat message must be the user's"),
    ([{"role": "tool", "content": "t1"}], ValueError, "unknown role"),
    (THREE_TURNS[:2], ValueError, "last chat message must be the user's"),
    ([{"role": "user"}], ValueError, "content"),
    ([{"role": "user", "content": 3}], ValueError, "role.*content"),
    ([{"role": "user", "content": "t1" * 40}], ValueError, "longer than the context"),
    ("t1", TypeError, "list of"),
    ({"role": "user", "content": "t1"}, TypeError, "list of"),
    ([{"role": "user", "content": b"t1"}], TypeError, "list of"),
])
def test_bad_conversations_are_refused(engine, messages, error, match):
    with pytest.raises(error, match=match):
        engine.chat(messages, max_new_tokens=1)


def test_bad_options_are_refused(engine):
    with pytest.raises(ValueError, match="temperature"):
        engine.chat(THREE_TURNS[:1], temperature=-1)


def test_nano_infer_instruct_mode_keeps_the_history(engine):
    """Each line on stdin is the user's next turn; the answers equal nano.Engine.chat's on the growing history."""
    from test_cli import nano_infer_binary, run

    questions = ["t1t2t3", "t5", "t10t11"]
    opts = dict(max_new_tokens=4, temperature=1.0, seed=5)  # this random model's greedy answers are empty
    history: list[dict] = []
    answers = []
    for q in questions:
        history.append({"role": "user", "content": q})
        answers.append("".join(engine.chat(history, **opts)))
        history.append({"role": "assistant", "content": answers[-1]})
    # the history matters: the last question alone gets another answer
    assert all(answers), answers
    alone = "".join(engine.chat([{"role": "user", "content": questions[-1]}], **opts))
    assert alone != answers[-1]

    proc = run(nano_infer_binary(), engine.path, "-i", "-n", "4", "-t", "1.0", "-s", "5", "-q", "--threads", "1",
               stdin="".join(q + "\n" for q in questions))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == answers


def test_the_page_worker_builds_the_same_chat_prompt(engine):
    """The browser engine (the page's worker, in Debian's Chromium) builds nano.Engine.chat's prompt ids and
    generates the same sampled answer (same seed). Needs the WASM package rebuilt from these sources."""
    import base64
    from pathlib import Path

    import web_harness as wh

    why = wh.missing_requirements()
    if why:
        pytest.skip(why)
    model_b64 = base64.b64encode(Path(engine.path).read_bytes()).decode()
    with wh.serve_page() as url, wh.browser_page(url) as (page, requests):
        wh.open_page(page, url)
        reply = page.evaluate(
            """([modelB64, messages]) => new Promise((resolve, reject) => {
                const bytes = Uint8Array.from(atob(modelB64), (c) => c.charCodeAt(0)).buffer;
                const w = new Worker('worker.js', {type: 'module'});
                const out = {text: ''};
                const options = {maxNewTokens: 6, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1,
                                 seed: '5', instruct: false};
                w.onmessage = (e) => {
                    const m = e.data;
                    if (m.type === 'ready') w.postMessage({id: 1, type: 'load', bytes}, [bytes]);
                    else if (m.type === 'fatal' || m.type === 'error') reject(new Error(m.message));
                    else if (m.id === 1) w.postMessage({id: 2, type: 'chatIds', messages});
                    else if (m.id === 2) { out.ids = m.ids; w.postMessage({id: 3, type: 'chat', messages, options}); }
                    else if (m.type === 'piece') out.text += m.text;
                    else if (m.id === 3) { w.terminate(); resolve(out); }
                };
            })""",
            [model_b64, THREE_TURNS],
        )
        assert requests.off_loopback() == []
    assert reply["ids"] == engine.chat_prompt_ids(THREE_TURNS)
    want = "".join(engine.chat(THREE_TURNS, max_new_tokens=6, temperature=1.0, seed=5))
    assert want and reply["text"] == want
