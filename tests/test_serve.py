"""`nano-infer serve` as a real server process on a loopback port, driven by the official `openai` client and by
raw HTTP: completions and chat against `nano.Engine`'s text, streaming, stop strings, seeds with and without
concurrent requests, cancellation, a full queue, the API key and bad input."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from nano import Engine
from nano.export import export_checkpoint
from nano.tokenizer import EOS, INSTRUCT_MARK, RESPONSE_MARK
from test_cli import nano_infer_binary
from test_format import TEXT, small_model, small_tokenizer

openai = pytest.importorskip("openai")

REPO = Path(__file__).resolve().parent.parent
CONTEXT = 96


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    tok, model = small_tokenizer(), small_model(seed=5, block_size=CONTEXT)
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    return export_checkpoint(ckpt, tmp_path_factory.mktemp("serve") / "tiny.bin")


class Server:
    """A running server: its process and base URL; stopped (and its stderr kept) on close."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if match is None:
            self.proc.kill()
            raise AssertionError(f"server did not start: {line}{self.proc.stderr.read()}")
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
        """(status, headers, parsed JSON or text) of one request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        try:
            return resp.status, resp.headers, json.loads(text)
        except json.JSONDecodeError:
            return resp.status, resp.headers, text

    def health(self) -> dict:
        return self.request("GET", "/health")[2]

    def client(self, key: str = "none"):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(model_path, *args) -> Server:
    return Server([str(nano_infer_binary()), "serve", str(model_path), "--port", "0", "--threads", "1", *args])


@pytest.fixture(scope="module")
def server(model_path):
    s = start(model_path, "--parallel", "4")
    yield s
    s.close()


@pytest.fixture(scope="module")
def engine(model_path):
    return Engine(model_path, threads=1)


def engine_text(engine, prompt, n, **opts) -> str:
    return "".join(engine.generate(prompt, n, **opts))


def test_models_and_health(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]
    h = server.health()
    assert h["status"] == "ok" and h["slots"] == 4


@pytest.mark.parametrize("opts", [dict(temperature=0.0), dict(temperature=1.0, seed=7),
                                  dict(temperature=0.8, seed=3, top_p=0.9, top_k=20, repetition_penalty=1.3)])
def test_completion_text_equals_the_engine(server, engine, opts):
    prompt = TEXT[:12]
    extra = {k: opts[k] for k in ("top_k", "repetition_penalty") if k in opts}
    plain = {k: v for k, v in opts.items() if k not in extra}
    r = server.client().completions.create(model="tiny", prompt=prompt, max_tokens=30, extra_body=extra, **plain)
    want = engine_text(engine, prompt, 30, **opts)
    assert r.choices[0].text == want
    assert r.usage.prompt_tokens == len(engine.prompt_ids(prompt))
    assert r.choices[0].finish_reason in ("stop", "length")
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 30


def test_sampled_text_is_not_empty(server):
    """The model's sampled text is text (a test comparing empty strings could not fail)."""
    r = server.client().completions.create(model="tiny", prompt=TEXT[:5], max_tokens=20, seed=1,
                                           extra_body={"ignore_eos": True})
    assert len(r.choices[0].text) > 0 and r.usage.completion_tokens == 20


def test_chat_with_history_equals_the_engine_on_the_instruction_template(server, engine):
    tok = engine.tokenizer
    turns = [("user", TEXT[:8]), ("assistant", TEXT[10:20]), ("system", "ignored"), ("user", TEXT[20:30])]
    messages = [{"role": r, "content": c} for r, c in turns]
    mark = tok.token_to_id
    ids = [mark(INSTRUCT_MARK), *tok.encode(TEXT[:8]), mark(RESPONSE_MARK), *tok.encode(TEXT[10:20]), mark(EOS),
           mark(INSTRUCT_MARK), *tok.encode(TEXT[20:30]), mark(RESPONSE_MARK)]
    for opts in (dict(temperature=0.0), dict(temperature=1.0, seed=11)):
        r = server.client().chat.completions.create(model="tiny", messages=messages, max_tokens=25, **opts)
        assert r.choices[0].message.role == "assistant"
        assert r.choices[0].message.content == engine_text(engine, ids, 25, **opts)
        assert r.usage.prompt_tokens == len(ids)
    # One user message: the engine's own instruction mode.
    r = server.client().chat.completions.create(model="tiny", messages=messages[:1], max_tokens=25, seed=4)
    assert r.choices[0].message.content == engine_text(engine, TEXT[:8], 25, seed=4, instruct=True)


def test_streaming_gives_the_same_text_and_ends_with_done(server):
    client = server.client()
    kw = dict(model="tiny", max_tokens=20, seed=9, extra_body={"ignore_eos": True})
    whole = client.completions.create(prompt=TEXT[:6], **kw).choices[0].text
    chunks = list(client.completions.create(prompt=TEXT[:6], stream=True, **kw))
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    chat_kw = dict(model="tiny", messages=[{"role": "user", "content": TEXT[:6]}], max_tokens=20, seed=9)
    whole = client.chat.completions.create(**chat_kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **chat_kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    # Raw server-sent events: data lines of JSON, then [DONE].
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/v1/completions", json.dumps({"prompt": TEXT[:6], "max_tokens": 3, "stream": True}))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    events = [line for line in resp.read().decode().split("\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-1])


def test_stop_strings_end_the_text_before_them(server):
    client = server.client()
    kw = dict(model="tiny", prompt=TEXT[:6], max_tokens=40, seed=21, extra_body={"ignore_eos": True})
    full = client.completions.create(**kw).choices[0].text
    assert len(full) >= 10
    stop = full[6:9]
    want = full[: full.index(stop)]
    for stream in (False, True):
        if stream:
            chunks = list(client.completions.create(stream=True, stop=[stop, "never-seen"], **kw))
            text, reason = "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
        else:
            r = client.completions.create(stop=stop, **kw)
            text, reason = r.choices[0].text, r.choices[0].finish_reason
        assert (text, reason) == (want, "stop")


def test_logprobs_are_the_engines_log_softmax(server, engine):
    """Each token's log-probability and its top alternatives are the log-softmax of the model's logits at
    that position (nano.Engine.log_probs over prompt + generated ids). Tolerance: the server's logits come
    from decode steps, the engine's from one prefill pass, which for float weights sums in its own order
    (README: within 1e-5 of decode's logits); a log-softmax moves by at most twice its inputs' error."""
    prompt = TEXT[:9]
    r = server.client().completions.create(model="tiny", prompt=prompt, max_tokens=12, seed=5, logprobs=3,
                                           extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    tok = engine.tokenizer
    gen = [tok.token_to_id(t) for t in lp.tokens]
    assert len(gen) == 12 and None not in gen
    ids = engine.prompt_ids(prompt)
    want = engine.log_probs(ids + gen)[len(ids) - 1:-1]
    assert lp.token_logprobs == pytest.approx([float(want[i, g]) for i, g in enumerate(gen)], abs=2e-5)
    for i, top in enumerate(lp.top_logprobs):
        best = sorted(range(want.shape[1]), key=lambda j: (-want[i, j], j))[:3]
        assert top == pytest.approx({tok.id_to_token(j): float(want[i, j]) for j in best}, abs=2e-5)
    dec = tok.stream_decoder(skip_special=True)
    pieces = [dec.push(g) for g in gen]
    assert lp.text_offset == [len("".join(pieces[:i])) for i in range(12)]
    assert r.choices[0].text == "".join(pieces)
    # Streamed: the same entries, one per chunk.
    chunks = list(server.client().completions.create(model="tiny", prompt=prompt, max_tokens=12, seed=5,
                                                     logprobs=3, stream=True, extra_body={"ignore_eos": True}))
    streamed = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.token_logprobs]
    assert streamed == lp.token_logprobs


def one(server, seed, prompt=TEXT[:7], n=30):
    r = server.client().completions.create(model="tiny", prompt=prompt, max_tokens=n, seed=seed,
                                           extra_body={"ignore_eos": True})
    return r.choices[0].text


def test_a_seed_gives_the_same_text_whatever_runs_beside_it(server):
    alone = [one(server, s) for s in (1, 2)]
    assert alone[0] != alone[1]
    # The same two requests among others of other lengths, joining and leaving at different steps.
    jobs = [(1, TEXT[:7], 30), (5, TEXT[3:40], 12), (2, TEXT[:7], 30), (6, TEXT[1:4], 50), (7, TEXT[:20], 5),
            (8, TEXT[9:11], 25)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(lambda j: one(server, *j), jobs))
    assert [got[0], got[2]] == alone


@pytest.fixture(scope="module")
def slow_server(model_path):
    """One slot, one queue place, and a pause before every decode step, so that a request stays active
    long enough for the test to act while it runs."""
    s = start(model_path, "--parallel", "1", "--max-queue", "1", "--step-delay-ms", "50")
    yield s
    s.close()


def open_stream(server, max_tokens=80) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = {"prompt": TEXT[:5], "max_tokens": max_tokens, "stream": True, "ignore_eos": True}
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    return conn, resp


def wait_for(cond, what: str):
    """Polls until `cond()` holds (a bound only against hanging forever; no speed is asserted)."""
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_full_queue_answers_503_and_disconnect_cancels(slow_server):
    s = slow_server
    before = s.health()["requests_cancelled"]
    conn1, resp1 = open_stream(s)
    assert resp1.readline().startswith(b"data: ")  # the first token: request 1 holds the slot
    conn2, _ = open_stream(s)
    wait_for(lambda: s.health()["queued"] == 1, "request 2 queued")
    status, headers, body = s.request("POST", "/v1/completions", {"prompt": "a", "max_tokens": 2})
    assert status == 503 and headers["Retry-After"] == "1"
    assert body["error"]["type"] == "server_busy"
    # Both clients go away mid-stream: both requests are cancelled (the queued one when its turn comes).
    conn1.close()
    conn2.close()
    wait_for(lambda: s.health()["requests_cancelled"] == before + 2, "both requests cancelled")
    h = s.health()
    assert h["slots_busy"] == 0 and h["queued"] == 0
    assert s.request("POST", "/v1/completions", {"prompt": "a", "max_tokens": 2})[0] == 200


def test_api_key(model_path):
    s = start(model_path, "--api-key", "sekrit")
    try:
        assert s.request("GET", "/health")[0] == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekrit"}):
            status, _, body = s.request("GET", "/v1/models", headers=headers)
            assert status == 401 and body["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").completions.create(model="tiny", prompt="a", max_tokens=2)
        r = s.client("sekrit").completions.create(model="tiny", prompt="a", max_tokens=2)
        assert r.usage.prompt_tokens == 1
    finally:
        s.close()


def bad(server, path, body, status=400, param=None, raw=None):
    got, _, answer = server.request("POST", path, body, raw=raw)
    assert got == status, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["message"]
    if param is not None:
        assert answer["error"]["param"] == param
    return answer["error"]["message"]


def test_bad_input_is_refused_with_an_error_body(server):
    c, ch = "/v1/completions", "/v1/chat/completions"
    bad(server, c, None, raw=b"{not json")
    bad(server, c, None, raw=b"\xff\xfe")
    bad(server, c, {"prompt": 5})
    bad(server, c, {"prompt": "a", "max_tokens": "ten"})
    bad(server, c, {"prompt": "a", "max_tokens": -1})
    bad(server, c, {"prompt": "a", "seed": -3})
    bad(server, c, {"prompt": "a", "temperature": "hot"})
    bad(server, c, [1, 2])
    bad(server, c, {})
    assert bad(server, c, {"prompt": "a", "model": "gpt-4"}, status=404, param="model")
    msg = bad(server, c, {"prompt": "a", "temperature": -1})
    with pytest.raises(ValueError) as e:
        from nano import _native
        _native.check_sampling_options(-1.0, 0, 1.0, 1.0)
    assert msg == str(e.value)
    bad(server, c, {"prompt": "a", "top_k": -2}, param="top_k")
    bad(server, c, {"prompt": "a", "n": 2}, param="n")
    bad(server, c, {"prompt": "a", "logprobs": 6}, param="logprobs")
    bad(server, c, {"prompt": "a", "logprobs": "all"}, param="logprobs")
    bad(server, ch, {"messages": [{"role": "user", "content": "a"}], "logprobs": True}, param="logprobs")
    bad(server, c, {"prompt": "a", "presence_penalty": 0.5}, param="presence_penalty")
    bad(server, c, {"prompt": "a", "max_tokens": 0}, param="max_tokens")
    bad(server, c, {"prompt": "a", "max_tokens": CONTEXT + 1}, param="max_tokens")
    bad(server, c, {"prompt": "a", "stop": [""]}, param="stop")
    bad(server, c, {"prompt": ""}, param="prompt")
    bad(server, c, {"prompt": ["a", "b"]}, param="prompt")
    assert "context" in bad(server, c, {"prompt": "a" * CONTEXT}, param="prompt")
    bad(server, c, {"prompt": "a" * (2 << 20)}, status=413)
    bad(server, ch, {"messages": []}, param="messages")
    bad(server, ch, {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    bad(server, ch, {"messages": [{"role": "wizard", "content": "a"}]}, param="messages")
    bad(server, ch, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, param="messages")
    bad(server, ch, {"messages": "hi"})
    status, _, answer = server.request("GET", "/v1/nothing")
    assert status == 404 and "error" in answer
    with pytest.raises(openai.NotFoundError):
        server.client().completions.create(model="other", prompt="a", max_tokens=2)
    # Still serving.
    assert server.client().completions.create(model="tiny", prompt="a", max_tokens=2).usage.prompt_tokens == 1


def test_python_module_starts_the_same_server(model_path, engine):
    s = Server([sys.executable, "-m", "nano.serve", str(model_path), "--port", "0", "--threads", "1"])
    try:
        r = s.client().completions.create(model="tiny", prompt=TEXT[:6], max_tokens=10, seed=2)
        assert r.choices[0].text == engine_text(engine, TEXT[:6], 10, seed=2)
    finally:
        s.close()
    out = subprocess.run([sys.executable, "-m", "nano.serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--parallel" in out.stdout
    out = subprocess.run([sys.executable, "-m", "nano.serve", "/no/such/model.bin"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.startswith("python -m nano.serve: error:")


def read_to_end(sock) -> bytes:
    sock.settimeout(60)  # a bound against hanging: the server is expected to close long before
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("sent", [b"", b"GET /health HTTP/1.1\r\nHost: x\r\n"])
def test_idle_and_unfinished_connections_are_closed(model_path, sent):
    s = start(model_path, "--idle-timeout", "1")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.connect()
        conn.sock.sendall(sent)
        answer = read_to_end(conn.sock)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        conn.close()
    finally:
        s.close()
