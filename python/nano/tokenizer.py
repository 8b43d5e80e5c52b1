"""Nano's tokenizer: greedy maximum forward matching over Unicode code points, in Rust.

At each position the longest vocabulary entry that is a prefix of the remaining text is emitted; a
character that starts no entry becomes ``<|unknown|>``. Special-token strings (``<|eos|>`` ...) are
matched only with ``allow_special=True``; by default they are ordinary text.

    >>> tok = Tokenizer.from_file("tokenizer_16384.json")          # doctest: +SKIP
    >>> tok.decode(tok.encode("你好，Nano")) == "你好，Nano"         # doctest: +SKIP

Command line: ``python -m nano.tokenizer build|encode|stats --help``.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from nano import _native
from nano._atomic import atomic_write
from nano._cli import bounded_int, main_errors, positive_int, threads_arg
from nano._outputs import check_replaceable_file, clean_stale_temps

__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "BpeTokenizer",
    "StreamDecoder",
    "Tokenizer",
    "instruction_ids",
    "read_corpus",
    "render_chat_template",
    "main",
]

# The special tokens and the instruction template have one owner, the Rust crate (nano_tokenizer::special).
#: The original project's special tokens, ids 0..6 of every vocabulary Nano builds.
DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = tuple(_native.DEFAULT_SPECIAL_TOKENS)
PADDING: str = _native.PADDING
UNKNOWN: str = _native.UNKNOWN
BOS: str = _native.BOS
EOS: str = _native.EOS
INSTRUCT_MARK: str = _native.INSTRUCT_MARK
RESPONSE_MARK: str = _native.RESPONSE_MARK
#: The instruction template as a Jinja chat template (user turn: ``INSTRUCT_MARK question RESPONSE_MARK``,
#: assistant turn: ``answer EOS``), the template of Nano's models and of ``nano.Engine.chat``.
CHAT_TEMPLATE: str = _native.CHAT_TEMPLATE


def instruction_ids(tokenizer: Tokenizer, prompt_ids: Sequence[int]) -> list[int]:
    """The instruction template around ``prompt_ids``: ``INSTRUCT_MARK prompt RESPONSE_MARK`` (the engine's
    instruction mode and SFT samples use the same). ValueError when the vocabulary lacks a mark."""
    marks = []
    for name in (INSTRUCT_MARK, RESPONSE_MARK):
        token_id = tokenizer.token_to_id(name)
        if token_id is None:
            raise ValueError(f"instruction mode needs the token {name}, which this vocabulary lacks")
        marks.append(int(token_id))
    return _native.instruction_ids(marks[0], [int(i) for i in prompt_ids], marks[1])


def read_corpus(path: str | os.PathLike) -> str:
    """A corpus file as text. ``.jsonl``: the string fields of each record, one per line.

    Raises ValueError naming the byte offset when the file is not UTF-8, OSError when unreadable.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 at byte offset {e.start}") from None
    if str(path).endswith(".jsonl"):
        fields, skipped = [], 0
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not JSON ({e.msg})") from None
            values = record.values() if isinstance(record, dict) else [record]
            for v in values:
                if isinstance(v, str):
                    if _has_lone_surrogate(v):  # a "\ud800" escape: not text; skipped and reported
                        skipped += 1
                        if skipped <= 10:
                            print(f"skipped {path}:{number}: a string with a lone surrogate "
                                  "(a \\uD800-\\uDFFF escape that is not half of a pair)", file=sys.stderr)
                    else:
                        fields.append(v)
        if skipped:
            print(f"{path}: skipped {skipped} string(s) with lone surrogates", file=sys.stderr)
        text = "\n".join(fields)
    return text


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class Tokenizer:
    """An immutable vocabulary and its matcher; thread-safe and picklable.

    Build one with :meth:`from_file`, :meth:`from_json`, :meth:`from_tokens` or :meth:`build`.
    """

    __slots__ = ("_core", "build_report")

    def __init__(self, core: _native.Tokenizer):
        if not isinstance(core, _native.Tokenizer):
            raise TypeError("use Tokenizer.from_file / from_json / from_tokens / build")
        self._core = core
        #: The builder's findings (dict) for a tokenizer made by :meth:`build`, else None.
        self.build_report: dict | None = None

    # ---- construction and persistence -------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Loads a vocabulary JSON file (ValueError if malformed, OSError if unreadable)."""
        return cls(_native.Tokenizer.from_file(os.fspath(path)))

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Parses vocabulary JSON text."""
        if not isinstance(text, str):
            raise TypeError(f"from_json expects str, got {type(text).__name__}")
        return cls(_native.Tokenizer.from_json(text))

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], special: Sequence[bool]) -> Tokenizer:
        """Tokens in id order and their special flags."""
        return cls(_native.Tokenizer.from_tokens(list(tokens), [bool(s) for s in special]))

    def to_json(self) -> str:
        """The vocabulary JSON, byte-identical to the original project's files."""
        return self._core.to_json()

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary JSON atomically."""
        self._core.save(os.fspath(path))

    def __reduce__(self):
        return (Tokenizer.from_json, (self.to_json(),))

    # ---- encoding ----------------------------------------------------------------------------
    def encode(self, text: str, allow_special: bool = False, threads: int | None = 1) -> list[int]:
        """Token ids of ``text``. ``threads`` > 1 (None: all cores) splits long texts."""
        return self._core.encode(_text(text), allow_special, threads)

    def encode_batch(
        self, texts: Iterable[str], allow_special: bool = False, threads: int | None = None
    ) -> list[list[int]]:
        """Ids of each text, encoded in parallel with the GIL released (None: all cores)."""
        return self._core.encode_batch(_texts(texts), allow_special, threads)

    def encode_to_numpy(
        self,
        texts: Iterable[str] | str,
        allow_special: bool = False,
        threads: int | None = None,
        dtype=None,
        separator_id: int | None = None,
    ) -> np.ndarray:
        """All texts' ids concatenated in one 1-D array, ``separator_id`` after each when given.

        ``dtype``: uint16 when the vocabulary fits (the default), else uint32.
        """
        wide = self._wide(dtype)
        return self._core.encode_to_numpy(_texts(texts), allow_special, threads, wide, separator_id)

    def _wide(self, dtype) -> bool:
        if dtype is None:
            return self.vocab_size > 65536
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"dtype must be uint16 or uint32, got {dtype!r}") from None
        if dt == np.uint32:
            return True
        if dt == np.uint16:
            return False
        raise ValueError(f"dtype must be uint16 or uint32, got {dt}")

    def decode(self, ids) -> str:
        """The text of ``ids``: token strings concatenated, a byte token adding its one byte.

        The ids of any text decode to exactly that text. Bytes that do not form UTF-8 (only in id
        sequences no encode produced) become U+FFFD. ValueError for an id outside the vocabulary.
        """
        if hasattr(ids, "tolist"):  # NumPy arrays, torch tensors
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        return self._core.decode(ids)

    @property
    def has_byte_fallback(self) -> bool:
        """Whether the vocabulary holds the 256 byte tokens (characters outside it become bytes)."""
        return self._core.has_byte_fallback

    def byte_value(self, token_id: int) -> int | None:
        """The byte a byte token ``<0xHH>`` stands for; None for every other id."""
        return self._core.byte_value(token_id)

    def stream_decoder(self, skip_special: bool = False) -> StreamDecoder:
        """An incremental decoder for streaming generated ids."""
        return StreamDecoder(self, skip_special)

    # ---- vocabulary --------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._core.vocab_size

    def __len__(self) -> int:
        return self._core.vocab_size

    @property
    def hash(self) -> str:
        """16 hex digits of FNV-1a-64 over the token list (see docs/tokenizer.md)."""
        return self._core.hash

    @property
    def unknown_id(self) -> int:
        return self._core.unknown_id

    @property
    def max_token_chars(self) -> int:
        return self._core.max_token_chars

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token string -> id, in id order."""
        return dict(self._core.special_tokens())

    def token_to_id(self, token: str) -> int | None:
        return self._core.token_to_id(token)

    def id_to_token(self, token_id: int) -> str:
        """The token's string; ValueError when out of range."""
        return self._core.id_to_token(token_id)

    def is_special(self, token_id: int) -> bool:
        return self._core.is_special(token_id)

    def tokens(self) -> list[str]:
        """All token strings in id order."""
        return self._core.tokens()

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, hash={self.hash!r})"

    # ---- building and statistics ---------------------------------------------------------------
    @classmethod
    def build(
        cls,
        files: Iterable[str | os.PathLike] | str | os.PathLike,
        vocab_size: int,
        *,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        min_char_count: int = 1,
        max_token_chars: int = 16,
        threads: int | None = None,
        byte_fallback: bool = False,
    ) -> Tokenizer:
        """Builds a vocabulary of ``vocab_size`` entries from corpus files (text, or ``.jsonl``).

        Special tokens come first; then characters by frequency (``min_char_count``: rarer ones are
        left out); then multi-character tokens by how many tokens they save. Deterministic. The
        findings (character coverage, tokens/char on the corpus...) are in ``.build_report``.
        ``byte_fallback`` reserves the 256 byte tokens ``<0x00>``..``<0xFF>`` right after the special
        tokens: characters outside the vocabulary are then spelled as their UTF-8 bytes, so no text
        is lost.
        """
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        texts = [read_corpus(f) for f in files]
        return cls.build_from_texts(
            texts,
            vocab_size,
            special_tokens=special_tokens,
            min_char_count=min_char_count,
            max_token_chars=max_token_chars,
            threads=threads,
            byte_fallback=byte_fallback,
        )

    @classmethod
    def build_from_texts(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        min_char_count: int = 1,
        max_token_chars: int = 16,
        threads: int | None = None,
        byte_fallback: bool = False,
    ) -> Tokenizer:
        """Like :meth:`build`, from texts in memory."""
        texts = _texts(texts)
        if not any(texts):
            raise ValueError("cannot build a vocabulary from empty input")
        for name, value in (("vocab_size", vocab_size), ("min_char_count", min_char_count),
                            ("max_token_chars", max_token_chars)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        core, report = _native.Tokenizer.build(
            texts, vocab_size, list(special_tokens), min_char_count, max_token_chars, threads,
            bool(byte_fallback),
        )
        tok = cls(core)
        counts = {"distinct_chars", "kept_chars", "multi_char_tokens", "rounds", "corpus_chars"}
        tok.build_report = {k: int(v) if k in counts else float(v) for k, v in report}
        return tok

    def stats(self, text: str, allow_special: bool = False, threads: int | None = None) -> dict:
        """tokens/char, unknown rate and character coverage of ``text``.

        With byte fallback nothing is unknown; ``byte_tokens`` counts the byte tokens spent on
        characters outside the vocabulary (and ``top_unknown_chars`` lists those characters).
        """
        tokens, unknown, chars = self._core.count(_text(text), allow_special, threads)
        byte_tokens = 0
        if self.has_byte_fallback:
            ids = self.encode_to_numpy(text, allow_special=allow_special, threads=threads)
            byte_ids = [self._core.token_to_id(f"<0x{b:02X}>") for b in range(256)]
            byte_tokens = int(np.isin(ids, np.array(byte_ids, dtype=ids.dtype)).sum())
        missing: dict[str, int] = {}
        if unknown or byte_tokens:
            for ch in set(text):
                if self.token_to_id(ch) is None:
                    missing[ch] = text.count(ch)
        top = sorted(missing.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        return {
            "chars": chars,
            "tokens": tokens,
            "tokens_per_char": tokens / chars if chars else 0.0,
            "unknown_tokens": unknown,
            "unknown_rate": unknown / tokens if tokens else 0.0,
            "coverage": 1.0 - unknown / chars if chars else 1.0,
            "byte_tokens": byte_tokens,
            "top_unknown_chars": top,
        }


class BpeTokenizer:
    """A byte-pair-encoding tokenizer of a published model, in Rust: byte-level BPE (GPT-2,
    Llama 3, Qwen2 ...) or SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama).

    Gives the ids HF ``tokenizers`` gives for the same ``tokenizer.json`` (without the BOS a
    post-processor may add: see :attr:`bos_id`). Special tokens (``<|im_start|>``, ``</s>`` ...)
    are matched only with ``allow_special=True``; by default their text is ordinary text.

        >>> tok = BpeTokenizer.from_hf("Qwen2.5-0.5B-Instruct/")         # doctest: +SKIP
        >>> tok.decode(tok.encode("你好, Nano")) == "你好, Nano"           # doctest: +SKIP
    """

    __slots__ = ("_core",)

    def __init__(self, core: _native.BpeTokenizer):
        if not isinstance(core, _native.BpeTokenizer):
            raise TypeError("use BpeTokenizer.from_hf / from_hf_json / from_gguf")
        self._core = core

    @classmethod
    def from_hf(cls, path: str | os.PathLike) -> BpeTokenizer:
        """From a model folder holding ``tokenizer.json`` (and ``tokenizer_config.json`` for the
        special-token names and chat template), or from a ``tokenizer.json`` file.

        ValueError names the file and field of anything unsupported or malformed; OSError when
        a file cannot be read.
        """
        return cls(_native.BpeTokenizer.from_hf(os.fspath(path)))

    @classmethod
    def from_hf_json(cls, text: str) -> BpeTokenizer:
        """From the text of a ``tokenizer.json``."""
        return cls(_native.BpeTokenizer.from_hf_json(_text(text)))

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> BpeTokenizer:
        """From the ``tokenizer.ggml.*`` metadata of a GGUF file (tensors are not read)."""
        return cls(_native.BpeTokenizer.from_gguf(os.fspath(path)))

    def encode(self, text: str, allow_special: bool = False, threads: int | None = 1) -> list[int]:
        """Token ids of ``text``. ``threads`` > 1 (None: all cores) splits long texts."""
        return self._core.encode(_text(text), allow_special, threads)

    def encode_batch(
        self, texts: Iterable[str], allow_special: bool = False, threads: int | None = None
    ) -> list[list[int]]:
        """Ids of each text, encoded in parallel with the GIL released (None: all cores)."""
        return self._core.encode_batch(_texts(texts), allow_special, threads)

    def encode_to_numpy(
        self, texts: Iterable[str] | str, allow_special: bool = False, threads: int | None = None
    ) -> np.ndarray:
        """All texts' ids concatenated in one uint32 array."""
        return self._core.encode_to_numpy(_texts(texts), allow_special, threads)

    def decode(self, ids, skip_special: bool = False) -> str:
        """The text of ``ids``; bytes that do not form UTF-8 become U+FFFD."""
        return self._core.decode(_ids(ids), skip_special)

    def decode_bytes(self, ids, skip_special: bool = False) -> bytes:
        """The bytes of ``ids`` (a token may hold part of a character)."""
        return bytes(self._core.decode_bytes(_ids(ids), skip_special))

    def pre_tokenize(self, text: str) -> list[str] | None:
        """The pieces a byte-level vocabulary's pattern cuts ``text`` into, before normalization
        and added tokens are considered; None for SentencePiece vocabularies."""
        return self._core.pre_tokenize(_text(text))

    @property
    def vocab_size(self) -> int:
        return self._core.vocab_size

    def __len__(self) -> int:
        return self._core.vocab_size

    @property
    def kind(self) -> str:
        """``"byte_level:gpt2"``, ``"byte_level:llama3"``, ``"byte_level:qwen2"`` or ``"sentencepiece"``."""
        return self._core.kind

    def token_to_id(self, token: str) -> int | None:
        return self._core.token_to_id(token)

    def id_to_token(self, token_id: int) -> str:
        """The token as the vocabulary spells it; ValueError when out of range."""
        return self._core.id_to_token(token_id)

    def is_special(self, token_id: int) -> bool:
        return self._core.is_special(token_id)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token string -> id."""
        return {c: i for c, i, special in self._core.added_tokens() if special}

    @property
    def config(self) -> dict:
        """bos/eos/pad/unk token names, ``add_bos_token`` and ``chat_template`` (None when unknown)."""
        return self._core.config()

    def _named_id(self, key: str) -> int | None:
        name = self._core.config()[key]
        return None if name is None else self.token_to_id(name)

    @property
    def bos_id(self) -> int | None:
        return self._named_id("bos_token")

    @property
    def eos_id(self) -> int | None:
        return self._named_id("eos_token")

    @property
    def chat_template(self) -> str | None:
        return self._core.config()["chat_template"]

    def apply_chat_template(
        self,
        messages: Sequence[dict],
        add_generation_prompt: bool = False,
        *,
        template: str | None = None,
        **variables,
    ) -> str:
        """The prompt text of OpenAI-style ``messages`` (``[{"role": ..., "content": ...}]``),
        rendered by the model's Jinja chat template (or ``template``) as ``transformers``'
        ``apply_chat_template(..., tokenize=False)`` renders it. ``bos_token`` / ``eos_token`` /
        ``pad_token`` / ``unk_token`` come from the model's config; ``variables`` (``tools=...``)
        add to or override them. Encode the result with ``allow_special=True``.
        """
        template = template if template is not None else self.chat_template
        if template is None:
            raise ValueError("this tokenizer has no chat template; pass template=")
        config = self.config
        context = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")
                   if config[k] is not None}
        context.update(variables)
        return render_chat_template(template, messages, add_generation_prompt, **context)

    def __repr__(self) -> str:
        return f"BpeTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def render_chat_template(
    template: str, messages: Sequence[dict], add_generation_prompt: bool = False, **variables
) -> str:
    """Renders a Jinja chat template with ``messages``, ``add_generation_prompt`` and
    ``variables`` in Rust (``minijinja``), set up as ``transformers`` sets up Jinja2.
    ValueError for a template that does not compile or fails (``raise_exception``)."""
    try:
        messages_json = json.dumps(list(messages), ensure_ascii=False)
        variables_json = json.dumps(variables, ensure_ascii=False)
    except TypeError as e:
        raise TypeError(f"chat messages and variables must be JSON data: {e}") from None
    return _native.render_chat_template(_text(template), messages_json, bool(add_generation_prompt),
                                        variables_json)


class StreamDecoder:
    """Turns generated ids into text piece by piece.

    An ordinary token is whole code points and comes out at once. Byte tokens wait until they
    complete a character, which then comes out whole; bytes that cannot become a character come out
    as U+FFFD, exactly as in :meth:`Tokenizer.decode`. :meth:`finish` flushes an incomplete
    character left at the end.
    """

    __slots__ = ("_tok", "_skip", "_parts", "_utf8")

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        self._tok = tokenizer
        self._skip = skip_special
        self._parts: list[str] = []
        # CPython's UTF-8 decoder replaces invalid bytes by the same maximal-subpart rule as
        # Rust's from_utf8_lossy, which Tokenizer.decode uses.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """The text this id completes (empty for a skipped special token or a partial character)."""
        piece = self._tok.id_to_token(token_id)
        if self._skip and self._tok.is_special(token_id):
            return ""
        byte = self._tok.byte_value(token_id)
        data = bytes([byte]) if byte is not None else piece.encode("utf-8")
        piece = self._utf8.decode(data)
        self._parts.append(piece)
        return piece

    def finish(self) -> str:
        """Flushes bytes still waiting for the rest of their character (as U+FFFD)."""
        piece = self._utf8.decode(b"", final=True)
        self._parts.append(piece)
        return piece

    @property
    def text(self) -> str:
        return "".join(self._parts)


def _text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    return text


def _texts(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return texts


def _ids(ids) -> list[int]:
    if hasattr(ids, "tolist"):  # NumPy arrays, torch tensors
        ids = ids.tolist()
    if isinstance(ids, int):
        ids = [ids]
    return list(ids)


# ---- command line ------------------------------------------------------------------------------
def _is_vocabulary(path: Path) -> bool:
    try:
        Tokenizer.from_file(path)
    except (OSError, ValueError):
        return False
    return True


def _is_npy(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def _cmd_build(args) -> int:
    out = Path(args.out)
    check_replaceable_file(out, _is_vocabulary, args.files, what="vocabulary file")
    clean_stale_temps(out.parent, out.name)
    tok = Tokenizer.build(args.files, args.vocab_size, min_char_count=args.min_char_count,
                          max_token_chars=args.max_token_chars, threads=args.threads,
                          byte_fallback=args.byte_fallback)
    tok.save(args.out)
    r = tok.build_report
    print(f"wrote {args.out}: {tok.vocab_size} tokens, hash {tok.hash}")
    print(f"characters: {r['kept_chars']} kept of {r['distinct_chars']} distinct, "
          f"coverage {r['char_coverage']:.6f}")
    print(f"multi-character tokens: {r['multi_char_tokens']} ({r['rounds']} rounds)")
    print(f"training corpus: {r['corpus_chars']} chars, {r['tokens_per_char']:.4f} tokens/char")
    return 0


def _cmd_encode(args) -> int:
    tok = Tokenizer.from_file(args.vocab)
    if args.text is not None:
        texts = [args.text]
    elif args.files:
        texts = [read_corpus(f) for f in args.files]
    else:
        texts = [sys.stdin.read()]
    if args.npy:
        check_replaceable_file(Path(args.npy), _is_npy, [args.vocab, *args.files], what=".npy file")
        arr = tok.encode_to_numpy(texts, args.allow_special, args.threads, separator_id=args.separator_id)
        with atomic_write(args.npy) as f:
            np.save(f, arr)
        print(f"wrote {args.npy}: {arr.size} tokens ({arr.dtype})")
        return 0
    for ids in tok.encode_batch(texts, args.allow_special, args.threads):
        print(" ".join(map(str, ids)))
    return 0


def _cmd_stats(args) -> int:
    tok = Tokenizer.from_file(args.vocab)
    totals = {"chars": 0, "tokens": 0, "unknown_tokens": 0}
    for f in args.files:
        s = tok.stats(read_corpus(f), threads=args.threads)
        for k in totals:
            totals[k] += s[k]
        top = "".join(ch for ch, _ in s["top_unknown_chars"][:10])
        print(f"{f}: {s['chars']} chars, {s['tokens']} tokens, {s['tokens_per_char']:.4f} tokens/char, "
              f"unknown rate {s['unknown_rate']:.6f}, coverage {s['coverage']:.6f}"
              + (f", byte tokens {s['byte_tokens']}" if tok.has_byte_fallback else "")
              + (f", top {'byte-spelled' if tok.has_byte_fallback else 'unknown'} {top!r}" if top else ""))
    if len(args.files) > 1 and totals["chars"]:
        t = totals
        print(f"total: {t['chars']} chars, {t['tokens']} tokens, "
              f"{t['tokens']/t['chars']:.4f} tokens/char, "
              f"unknown rate {t['unknown_tokens']/max(t['tokens'], 1):.6f}, "
              f"coverage {1 - t['unknown_tokens']/t['chars']:.6f}")
    return 0


@main_errors("nano.tokenizer", code=1)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nano.tokenizer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a vocabulary from corpus files")
    b.add_argument("files", nargs="+", help="UTF-8 text files (.jsonl: string fields of each record)")
    b.add_argument("--vocab-size", type=positive_int, default=16384)
    b.add_argument("--out", required=True, help="vocabulary JSON to write")
    b.add_argument("--min-char-count", type=positive_int, default=1, help="leave out rarer characters")
    b.add_argument("--max-token-chars", type=positive_int, default=16, help="longest token in characters")
    b.add_argument("--threads", type=threads_arg, default=None, help="worker threads (default: all cores)")
    b.add_argument("--byte-fallback", action="store_true",
                   help="reserve the 256 byte tokens <0x00>..<0xFF>: characters outside the vocabulary "
                        "become their UTF-8 bytes instead of <|unknown|>")
    b.set_defaults(run=_cmd_build)

    e = sub.add_parser("encode", help="print token ids (or write a .npy)")
    e.add_argument("--vocab", required=True, help="vocabulary JSON")
    e.add_argument("--text", help="text to encode (default: the files, else stdin)")
    e.add_argument("files", nargs="*")
    e.add_argument("--allow-special", action="store_true", help="match <|eos|> etc. as special tokens")
    e.add_argument("--npy", help="write all ids concatenated to this .npy file instead of printing")
    e.add_argument("--separator-id", type=bounded_int(0, 2**32 - 1), default=None, help="id appended after each text (--npy)")
    e.add_argument("--threads", type=threads_arg, default=None)
    e.set_defaults(run=_cmd_encode)

    s = sub.add_parser("stats", help="tokens/char, unknown rate and coverage of corpus files")
    s.add_argument("--vocab", required=True, help="vocabulary JSON")
    s.add_argument("files", nargs="+")
    s.add_argument("--threads", type=threads_arg, default=None)
    s.set_defaults(run=_cmd_stats)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
