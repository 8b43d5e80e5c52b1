"""Toy problems: seeded generators of (question, answer) token lists.

Each task owns a tiny vocabulary of symbols and knows its answer length (fixed per task, so both the causal
and the all-positions-at-once formulation know how many tokens to predict). The answers are computed here
from the task's own rule; tests check them against independent evaluators.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

DIGITS = tuple(str(d) for d in range(10))
# A bool expression of depth d is up to 5 * 2**d - 3 tokens long and the model attends over all of them:
# depth 10 is already a 5117-token question. Digit tasks grow linearly; 512 digits is far past toy size.
MAX_DEPTH = 10
MAX_LENGTH = 512
LOOPS = {"0": 1, "6": 1, "9": 1, "8": 2}  # closed loops drawn in each digit; the others have none


class Task:
    """A problem: ``sample(rng)`` -> (question tokens, answer tokens)."""

    name: str = ""
    symbols: tuple[str, ...] = ()  # every token a question or answer may use
    answer_len: int = 1
    max_question_len: int = 1

    def sample(self, rng: random.Random) -> tuple[list[str], list[str]]:
        raise NotImplementedError

    def stratum(self, question: list[str]) -> int:
        """A class of questions (bool: the depth) whose share the held-out split must not distort."""
        return 0

    def sample_stratum(self, rng: random.Random, stratum: int) -> tuple[list[str], list[str]]:
        """A sample from one stratum, drawn as sample() draws within it."""
        return self.sample(rng)

    def splittable(self, stratum: int) -> bool:
        """False when a stratum has too few distinct questions to hold any out."""
        return True

    def intermediate(self, question: list[str]) -> list[str | None] | None:
        """Optional extra training targets, one per question position (None = none there)."""
        return None

    def params(self) -> dict:
        return {}

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params().items())


def _digits(rng: random.Random, n: int) -> list[str]:
    return [DIGITS[rng.randrange(10)] for _ in range(n)]


@dataclass
class DigitStringTask(Task):
    """A question of `length` random digits; a subclass says what the answer is."""

    length: int = 6

    def __post_init__(self):
        _check_positive("length", self.length, MAX_LENGTH)
        self.max_question_len = self.answer_len = self.length
        self.symbols = DIGITS

    def sample(self, rng):
        q = _digits(rng, self.length)
        return q, self.answer(q)

    def answer(self, question: list[str]) -> list[str]:
        raise NotImplementedError

    def params(self):
        return {"length": self.length}


@dataclass
class LoopCount(DigitStringTask):
    """q: count the closed loops in the digits of an n-digit number (0, 6, 9 -> 1; 8 -> 2); one answer token."""

    name = "q"

    def __post_init__(self):
        super().__post_init__()
        self.answer_len = 1
        self.symbols = DIGITS + tuple(str(n) for n in range(10, 2 * self.length + 1))

    def answer(self, question):
        return [str(sum(LOOPS.get(d, 0) for d in question))]


@dataclass
class SortDigits(DigitStringTask):
    """sort: the digits of an n-digit string in ascending order (114515 -> 111455)."""

    name = "sort"

    def answer(self, question):
        return sorted(question)


@dataclass
class ReverseDigits(DigitStringTask):
    """reverse: a digit string backwards (123456 -> 654321)."""

    name = "reverse"

    def answer(self, question):
        return question[::-1]


@dataclass
class BoolExpr(Task):
    """bool: a random prefix expression over 0/1 with AND (*) and OR (+), e.g. ( + ( * 0 1 ) 1 ) -> 1.

    The depth of each expression is drawn uniformly from 1..depth and reached exactly along one random
    path; the other subtrees stop early with probability leaf_p per node, so sizes vary.
    """

    depth: int = 4
    leaf_p: float = 0.3
    name = "bool"

    def __post_init__(self):
        _check_positive("depth", self.depth, MAX_DEPTH)
        if not 0.0 <= self.leaf_p <= 1.0:
            raise ValueError(f"leaf_p must be in [0, 1], got {self.leaf_p}")
        self.answer_len = 1
        n_ops = 2 ** self.depth - 1  # a full binary tree: each op adds "(", op, ")"; 2^depth leaves
        self.max_question_len = 3 * n_ops + 2 ** self.depth
        self.symbols = ("(", ")", "*", "+", "0", "1")

    def sample(self, rng):
        return self.sample_stratum(rng, rng.randint(1, self.depth))

    def sample_stratum(self, rng, stratum):
        tokens: list[str] = []
        value = self._expr(rng, stratum, True, tokens)
        return tokens, [str(value)]

    def stratum(self, question):
        level = deepest = 0
        for t in question:
            level += (t == "(") - (t == ")")
            deepest = max(deepest, level)
        return deepest

    def intermediate(self, question):
        """The value of every sub-expression, at the position of its closing bracket."""
        out: list[str | None] = [None] * len(question)
        frames: list[list] = [[]]  # operator and operand values of each open bracket
        for i, t in enumerate(question):
            if t == "(":
                frames.append([])
            elif t in "*+":
                frames[-1].append(t)
            elif t in "01":
                frames[-1].append(int(t))
            else:  # ")"
                op, a, b = frames.pop()
                value = a & b if op == "*" else a | b
                frames[-1].append(value)
                out[i] = str(value)
        return out

    def splittable(self, stratum):
        return stratum >= 2  # depth 1 has only 8 expressions: all are trained on and evaluated

    def _expr(self, rng: random.Random, depth: int, must_reach: bool, out: list[str]) -> int:
        """Append an expression of depth <= depth (== depth when must_reach) to out; return its value."""
        if depth == 0 or (not must_reach and rng.random() < self.leaf_p):
            bit = rng.randrange(2)
            out.append(str(bit))
            return bit
        op = "*" if rng.randrange(2) else "+"
        deep = rng.randrange(2)  # which operand carries the required depth
        out += ["(", op]
        a = self._expr(rng, depth - 1, must_reach and deep == 0, out)
        b = self._expr(rng, depth - 1, must_reach and deep == 1, out)
        out.append(")")
        return a & b if op == "*" else a | b

    def params(self):
        return {"depth": self.depth, "leaf_p": self.leaf_p}


@dataclass
class AddNumbers(Task):
    """add (new task): a + b for two n-digit numbers, answer as n+1 digits with leading zeros.

    Tests carry propagation: each answer digit depends on all less significant digits of both operands.
    """

    length: int = 4
    name = "add"

    def __post_init__(self):
        _check_positive("length", self.length, MAX_LENGTH)
        self.max_question_len = 2 * self.length + 1
        self.answer_len = self.length + 1
        self.symbols = DIGITS + ("+",)

    def sample(self, rng):
        a, b = _digits(rng, self.length), _digits(rng, self.length)
        total = int("".join(a)) + int("".join(b))
        return a + ["+"] + b, list(str(total).zfill(self.length + 1))

    def params(self):
        return {"length": self.length}


TASKS = {"q": LoopCount, "sort": SortDigits, "reverse": ReverseDigits, "bool": BoolExpr, "add": AddNumbers}


def make_task(name: str, **params) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name](**{k: v for k, v in params.items() if v is not None})


def is_heldout(question: list[str]) -> bool:
    """About 1 question in 10 is reserved for evaluation (by a hash of its text) and never trained on."""
    return zlib.crc32(" ".join(question).encode()) % 10 == 0


def draw(task: Task, rng: random.Random, heldout: bool, max_tries: int = 10_000) -> tuple[list[str], list[str]]:
    """A sample from the training part (heldout=False) or the evaluation part (heldout=True).

    A first sample fixes the stratum, then samples of that stratum are drawn until one falls in the
    wanted part: both parts keep the task's natural mix of strata (plain rejection would over-represent
    strata with few questions, e.g. bool depth 1, whose handful of held-out questions would recur).
    """
    q, a = task.sample(rng)
    stratum = task.stratum(q)
    if not task.splittable(stratum):
        return q, a
    for _ in range(max_tries):
        if is_heldout(q) == heldout:
            return q, a
        q, a = task.sample_stratum(rng, stratum)
    part = "evaluation" if heldout else "training"
    raise ValueError(f"task {task.name} ({task.describe()}) has too few distinct questions for a {part} split")


def _check_positive(name: str, value, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValueError(f"{name} must be a positive integer up to {most}, got {value!r}")
