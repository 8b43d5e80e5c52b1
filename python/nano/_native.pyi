"""Type stubs for ``nano._native``, the PyO3 extension built from ``rust/python`` (checked against the built
module by ``scripts/check_stubs.sh``: ``python -m mypy.stubtest nano._native``)."""

import os
from collections.abc import Iterator, Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "Tokenizer",
    "BpeTokenizer",
    "render_chat_template",
    "instruction_ids",
    "DEFAULT_SPECIAL_TOKENS",
    "PADDING",
    "UNKNOWN",
    "BOS",
    "EOS",
    "INSTRUCT_MARK",
    "RESPONSE_MARK",
    "CHAT_TEMPLATE",
    "shuffle_files",
    "splitmix64",
    "write_model",
    "write_hf_model",
    "convert_gguf",
    "write_lora",
    "read_model",
    "read_lora",
    "Engine",
    "Generation",
    "INFER_VERSION",
    "check_sampling_options",
    "MODEL_CONFIG_FIELDS",
    "MODEL_CONFIG_TRAINING_ONLY",
    "MODEL_CONFIG_FILE_ONLY",
    "serve_main",
]

__version__: str

# ---- nano_tokenizer::special: the one owner of the special tokens and the instruction template ----
DEFAULT_SPECIAL_TOKENS: list[str]
PADDING: str
UNKNOWN: str
BOS: str
EOS: str
INSTRUCT_MARK: str
RESPONSE_MARK: str
CHAT_TEMPLATE: str

def instruction_ids(instruct: int, prompt: Sequence[int], response: int) -> list[int]: ...

# ---- nano-tokenizer -------------------------------------------------------------------------------
@final
class Tokenizer:
    @staticmethod
    def from_json(text: str) -> Tokenizer: ...
    @staticmethod
    def from_file(path: str | os.PathLike[str]) -> Tokenizer: ...
    @staticmethod
    def from_tokens(tokens: Sequence[str], special: Sequence[bool]) -> Tokenizer: ...
    @staticmethod
    def build(
        texts: Sequence[str],
        vocab_size: int,
        special_tokens: Sequence[str],
        min_char_count: int = 1,
        max_token_chars: int = 16,
        threads: int | None = None,
        byte_fallback: bool = False,
    ) -> tuple[Tokenizer, list[tuple[str, float]]]: ...
    def to_json(self) -> str: ...
    def save(self, path: str | os.PathLike[str]) -> None: ...
    # threads defaults to 1 (one thread); PyO3 does not expose that default to introspection
    def encode(self, text: str, allow_special: bool = False, threads: int | None = ...) -> list[int]: ...
    def encode_batch(
        self, texts: Sequence[str], allow_special: bool = False, threads: int | None = None
    ) -> list[list[int]]: ...
    def encode_to_numpy(
        self,
        texts: Sequence[str],
        allow_special: bool = False,
        threads: int | None = None,
        wide: bool = False,
        separator_id: int | None = None,
    ) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint32]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def count(self, text: str, allow_special: bool = False, threads: int | None = None) -> tuple[int, int, int]: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def hash(self) -> str: ...
    @property
    def unknown_id(self) -> int: ...
    @property
    def max_token_chars(self) -> int: ...
    @property
    def has_byte_fallback(self) -> bool: ...
    def byte_value(self, id: int) -> int | None: ...
    def token_to_id(self, token: str) -> int | None: ...
    def id_to_token(self, id: int) -> str: ...
    def is_special(self, id: int) -> bool: ...
    def special_tokens(self) -> list[tuple[str, int]]: ...
    def tokens(self) -> list[str]: ...

@final
class BpeTokenizer:
    @staticmethod
    def from_hf(path: str | os.PathLike[str]) -> BpeTokenizer: ...
    @staticmethod
    def from_hf_json(text: str) -> BpeTokenizer: ...
    @staticmethod
    def from_gguf(path: str | os.PathLike[str]) -> BpeTokenizer: ...
    # threads defaults to 1 (one thread); PyO3 does not expose that default to introspection
    def encode(self, text: str, allow_special: bool = False, threads: int | None = ...) -> list[int]: ...
    def encode_batch(
        self, texts: Sequence[str], allow_special: bool = False, threads: int | None = None
    ) -> list[list[int]]: ...
    def encode_to_numpy(
        self, texts: Sequence[str], allow_special: bool = False, threads: int | None = None
    ) -> npt.NDArray[np.uint32]: ...
    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str: ...
    def decode_bytes(self, ids: Sequence[int], skip_special: bool = False) -> bytes: ...
    def pre_tokenize(self, text: str) -> list[str] | None: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def kind(self) -> str: ...
    def token_to_id(self, token: str) -> int | None: ...
    def id_to_token(self, id: int) -> str: ...
    def is_special(self, id: int) -> bool: ...
    def added_tokens(self) -> list[tuple[str, int, bool]]: ...
    def config(self) -> dict[str, Any]: ...

def render_chat_template(template: str, messages_json: str, add_generation_prompt: bool, variables_json: str) -> str: ...

# ---- nano-shuffle ---------------------------------------------------------------------------------
def shuffle_files(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    memory: int,
    seed: int = 0,
    tmp_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    record_size: int | None = None,
    progress: bool = False,
    pile_bytes: int | None = None,
) -> dict[str, int]: ...

# ---- nano-infer: the model-file format and the engine ---------------------------------------------
INFER_VERSION: str

def write_model(
    path: str | os.PathLike[str],
    config_json: str,
    tokenizer_json: str,
    tensors: dict[str, Any],
    dtype: str = "f32",
    legacy: bool = False,
    base_hash: str | None = None,
) -> None: ...
def convert_gguf(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> None: ...
def write_hf_model(
    path: str | os.PathLike[str],
    config_json: str,
    hf_tokenizer_json: str,
    tensors: dict[str, Any],
    dtype: str = "f32",
) -> None: ...
def write_lora(
    path: str | os.PathLike[str],
    lora_json: str,
    base_json: str,
    tensors: dict[str, Any],
    legacy: bool = False,
) -> None: ...
def read_model(
    path: str | os.PathLike[str],
) -> tuple[str, str, dict[str, npt.NDArray[np.float32]], dict[str, Any]]: ...
def read_lora(path: str | os.PathLike[str]) -> tuple[str, str, dict[str, npt.NDArray[np.float32]]]: ...
def splitmix64(seed: int, n: int) -> list[int]: ...
def check_sampling_options(
    temperature: float, top_k: int, top_p: float, repetition_penalty: float
) -> None: ...

MODEL_CONFIG_FIELDS: list[str]
MODEL_CONFIG_TRAINING_ONLY: list[str]
MODEL_CONFIG_FILE_ONLY: list[str]

@final
class Engine:
    def __new__(
        cls, path: str | os.PathLike[str], threads: int | None = None, kv_cache: str = "f32", ctx: int | None = None
    ) -> Engine: ...
    @property
    def kv_cache_bytes(self) -> int: ...
    @property
    def file_format(self) -> str: ...
    @property
    def config_json(self) -> str: ...
    @property
    def tokenizer_json(self) -> str: ...
    @property
    def base_hash(self) -> str | None: ...
    @property
    def tokenizer_kind(self) -> str: ...
    def render_chat(self, messages_json: str, add_generation_prompt: bool = True) -> str: ...
    def load_lora(self, path: str | os.PathLike[str]) -> None: ...
    def unload_lora(self) -> None: ...
    def prompt_ids(self, prompt: str, instruct: bool = False) -> list[int]: ...
    def chat_prompt_ids(self, messages_json: str) -> list[int]: ...
    @property
    def chat_template(self) -> str: ...
    def logits(self, ids: Sequence[int]) -> npt.NDArray[np.float32]: ...
    def generate(
        self,
        prompt: str | Sequence[int],
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        seed: int = 0,
        instruct: bool = False,
    ) -> Generation: ...

@final
class Generation:
    def __iter__(self) -> Iterator[str]: ...
    def __next__(self) -> str: ...
    def close(self) -> None: ...
    @property
    def stats(self) -> dict[str, float] | None: ...

# ---- nano_infer::serve: the OpenAI-compatible server (python -m nano.serve) -------------------------
def serve_main(argv: Sequence[str]) -> int: ...
