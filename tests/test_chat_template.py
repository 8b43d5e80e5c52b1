"""Chat templates rendered in Rust (minijinja) against ``transformers``' ``apply_chat_template``
(Jinja2) on the same templates and messages: ChatML, Llama 3, Zephyr/TinyLlama and Llama 2 styles,
a tools template using ``tojson``, and errors raised by ``raise_exception``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bpe_fixtures import build_fixture  # noqa: E402
from nano.tokenizer import BpeTokenizer, render_chat_template  # noqa: E402

CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Written across lines: exercises trim_blocks / lstrip_blocks.
ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}
"""

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

TOOLS = (
    "{% if tools %}<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools>\n{% endif %}"
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}"
    "{% if message.tool_calls is defined %}{% for call in message.tool_calls %}"
    "<call>{{ call.function | tojson(indent=2) }}</call>{% endfor %}{% endif %}\n{% endfor %}"
    "{% for key, value in messages[0].items() %}[{{ key }}={{ value }}]{% endfor %}"
)

TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "zephyr": ZEPHYR, "llama2": LLAMA2, "tools": TOOLS}

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  你好，世界  "},
     {"role": "assistant", "content": "Hi 👋 there"}, {"role": "user", "content": "Again\nwith\ttabs"}],
    [{"role": "user", "content": "What's 2+2? <b>bold</b> & \"quotes\""},
     {"role": "assistant", "content": "4", "tool_calls": [
         {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 2.5, "ok": True,
                                                                         "none": None, "é": ["x"]}}}]}],
]

TOOL_LIST = [{"type": "function", "function": {"name": "add", "description": "Adds — numbers",
                                               "parameters": {"type": "object", "properties": {
                                                   "a": {"type": "number"}, "b": {"type": "number"}}}}}]


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    folder = build_fixture("sentencepiece", tmp_path_factory.mktemp("chat") / "sp", vocab_size=600)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                               bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    return tok, folder


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_renders_as_transformers(hf_tokenizer, name, conversation, add_generation_prompt):
    hf, folder = hf_tokenizer
    messages = CONVERSATIONS[conversation]
    kwargs = {"tools": TOOL_LIST} if name == "tools" else {}
    try:
        want = hf.apply_chat_template(messages, chat_template=TEMPLATES[name], tokenize=False,
                                      add_generation_prompt=add_generation_prompt, **kwargs)
    except Exception as e:  # the template refused the conversation: so must we
        with pytest.raises(ValueError, match="alternate"):
            BpeTokenizer.from_hf(folder).apply_chat_template(
                messages, add_generation_prompt, template=TEMPLATES[name], **kwargs)
        assert "alternate" in str(e)
        return
    ours = BpeTokenizer.from_hf(folder).apply_chat_template(
        messages, add_generation_prompt, template=TEMPLATES[name], **kwargs)
    assert ours == want


def test_llama2_alternation_error_is_raised(hf_tokenizer):
    _, folder = hf_tokenizer
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ValueError, match="roles must alternate"):
        BpeTokenizer.from_hf(folder).apply_chat_template(messages, template=LLAMA2)


def test_template_from_config_and_errors(tmp_path, hf_tokenizer):
    _, folder = hf_tokenizer
    import json
    import shutil

    shutil.copy(folder / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "chat_template": ZEPHYR}))
    tok = BpeTokenizer.from_hf(tmp_path)
    assert tok.chat_template == ZEPHYR
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text == "<|user|>\nhi</s>\n<|assistant|>\n"
    with pytest.raises(ValueError, match="chat template"):
        render_chat_template("{% for %}", [])
    with pytest.raises(TypeError, match="JSON"):
        render_chat_template(CHATML, [{"role": "user", "content": object()}])
    bare = BpeTokenizer.from_hf(folder / "tokenizer.json")
    if bare.chat_template is None:
        with pytest.raises(ValueError, match="no chat template"):
            bare.apply_chat_template([])
