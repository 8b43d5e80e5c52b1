"""Multiple-choice exam files → ``Question`` records.

Formats (chosen by the file name's ending):
- ``.txt``: the original project's exam bank: blank-line separated records of ``[I]`` id, ``[Q]`` question,
  ``[A]`` the correct option, ``[B]`` ``[C]`` ``[D]`` wrong options, ``[P]`` image name (may be empty).
- ``.csv``: C-Eval / CMMLU style: a header with ``question`` and the option letters ``A``, ``B``, ... and
  ``answer`` (a letter); an ``id`` column is used when present (names are matched case-insensitively).
- ``.jsonl``: one object per line with the same keys (``question``, ``A``.., ``answer``), or ``choices``
  (a list) and ``answer`` (a letter or a 0-based index).
"""

from __future__ import annotations

import csv
import json
import os
import string
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Question", "load_exam", "parse_exam_bank"]

LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    options: tuple[str, ...]
    answer: int  # index of the correct option in ``options``
    image: str = ""  # the exam bank's [P]: a figure the question needs (not available as text)
    extra: dict = field(default_factory=dict, compare=False)


class ExamError(ValueError):
    """A malformed exam file (the message names the file and the record)."""


def _check(q: Question, where: str) -> Question:
    if not q.question.strip():
        raise ExamError(f"{where}: empty question")
    if len(q.options) < 2:
        raise ExamError(f"{where}: a multiple-choice question needs at least two options")
    if any(not o.strip() for o in q.options):
        raise ExamError(f"{where}: empty option")
    if not 0 <= q.answer < len(q.options):
        raise ExamError(f"{where}: answer is not one of the options")
    return q


def parse_exam_bank(text: str, source: str = "<exam>") -> list[Question]:
    """Records of ``[X]value`` lines separated by blank lines; ``[A]`` holds the correct option."""
    questions = []
    line_no = 0
    for block in text.replace("\r\n", "\n").split("\n\n"):
        start = line_no + 1
        line_no += block.count("\n") + 2
        fields: dict[str, str] = {}
        for offset, line in enumerate(block.split("\n")):
            if not line.strip():
                continue
            if len(line) < 3 or line[0] != "[" or line[2] != "]":
                raise ExamError(f"{source}:{start + offset}: expected a [X] field, got {line[:40]!r}")
            key = line[1]
            if key in fields:
                raise ExamError(f"{source}:{start + offset}: field [{key}] repeated in one record")
            fields[key] = line[3:].strip()
        if not fields:
            continue
        where = f"{source}:{start}"
        if "Q" not in fields or "A" not in fields:
            raise ExamError(f"{where}: a record needs [Q] and [A]")
        options = [fields[k] for k in "ABCDEFGH" if k in fields]
        questions.append(_check(Question(id=fields.get("I", f"#{len(questions) + 1}"), question=fields["Q"],
                                         options=tuple(options), answer=0, image=fields.get("P", "")), where))
    return questions


def _answer_index(value, n: int, where: str) -> int:
    if isinstance(value, bool):
        raise ExamError(f"{where}: answer must be a letter or an index, got {value!r}")
    if isinstance(value, int):
        index = value
    elif isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        index = LETTERS.index(value.strip().upper())
    else:
        raise ExamError(f"{where}: answer must be a letter or an index, got {value!r}")
    if not 0 <= index < n:
        raise ExamError(f"{where}: answer {value!r} is not one of the {n} options")
    return index


def _from_mapping(record: dict, where: str, number: int) -> Question:
    keys = {str(k).strip().lower(): k for k in record}
    if "question" not in keys or "answer" not in keys:
        raise ExamError(f"{where}: needs 'question' and 'answer'")
    if "choices" in keys:
        options = record[keys["choices"]]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ExamError(f"{where}: 'choices' must be a list of strings")
    else:
        options = []
        for letter in LETTERS:
            if letter.lower() not in keys:
                break
            options.append(record[keys[letter.lower()]])
        if not all(isinstance(o, str) for o in options):
            raise ExamError(f"{where}: options must be strings")
    question = record[keys["question"]]
    if not isinstance(question, str):
        raise ExamError(f"{where}: 'question' must be a string")
    ident = record.get(keys["id"]) if "id" in keys else None
    ident = str(ident) if ident not in (None, "") else f"#{number}"
    answer = _answer_index(record[keys["answer"]], len(options), where)
    return _check(Question(id=ident, question=question, options=tuple(options), answer=answer), where)


def load_exam(path: str | os.PathLike) -> list[Question]:
    """The questions of an exam file (format by extension, see the module doc); ExamError when malformed."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ExamError(f"{path}: not valid UTF-8 at byte offset {e.start}") from None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        questions = parse_exam_bank(text, str(path))
    elif suffix == ".csv":
        rows = csv.DictReader(text.splitlines())
        if rows.fieldnames is None:
            raise ExamError(f"{path}: empty CSV file")
        # CMMLU leaves the index column's header empty; name it id
        rows.fieldnames = [name if name.strip() else "id" for name in rows.fieldnames]
        questions = [_from_mapping(row, f"{path}:{n + 2}", n + 1) for n, row in enumerate(rows)]
    elif suffix in (".jsonl", ".json"):
        questions = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ExamError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ExamError(f"{path}:{n}: not a JSON object")
            questions.append(_from_mapping(record, f"{path}:{n}", len(questions) + 1))
    else:
        raise ExamError(f"{path}: unknown exam format {suffix!r} (use .txt exam bank, .csv or .jsonl)")
    if not questions:
        raise ExamError(f"{path}: no questions")
    return questions
