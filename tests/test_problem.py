"""Toy problems: generators against independent evaluators, encodings, decoding plumbing, CLI errors."""

import random

import pytest
import torch
from nano.problem import ProblemLoader, Vocab, draw, is_heldout, make_task, predict
from nano.problem.encoding import MASK, PAD, block_size, encode_example
from nano.problem.runner import settings

HOLES = [1, 0, 0, 0, 0, 0, 1, 0, 2, 1]  # closed loops of the digits 0..9, as drawn


def python_bool(tokens):
    """Translate a prefix expression to a Python expression and eval it (independent of the generator)."""
    stack = []
    for t in reversed([t for t in tokens if t not in "()"]):
        if t in "01":
            stack.append(t)
        else:
            a, b = stack.pop(), stack.pop()
            stack.append(f"({a} {'and' if t == '*' else 'or'} {b})")
    assert len(stack) == 1
    return int(eval(stack[0]))  # noqa: S307 - only 0/1/and/or/brackets built above


def python_sum(tokens):
    return sum(int(part) for part in "".join(tokens).split("+"))


def nesting(tokens):
    level = deepest = 0
    for t in tokens:
        level += (t == "(") - (t == ")")
        assert level >= 0
        deepest = max(deepest, level)
    assert level == 0
    return deepest


def samples(name, n=1500, seed=1, **params):
    task = make_task(name, **params)
    rng = random.Random(seed)
    return task, [task.sample(rng) for _ in range(n)]


def test_q_answers_count_loops():
    task, data = samples("q")
    for q, a in data:
        assert len(q) == 6 and all(d.isdigit() for d in q)
        assert a == [str(sum(HOLES[int(d)] for d in q))]
    assert {a[0] for _, a in data} >= {"0", "1", "2", "3", "4", "5"}


def test_sort_answers_are_sorted_permutations():
    task, data = samples("sort", length=7)
    for q, a in data:
        assert int("".join(a)) == int("".join(sorted("".join(q)))) and len(a) == 7


def test_reverse_answers():
    _, data = samples("reverse", length=5)
    for q, a in data:
        assert "".join(a) == "".join(q)[::-1]


def test_add_answers():
    _, data = samples("add", length=4)
    for q, a in data:
        assert len(a) == 5
        assert int("".join(a)) == python_sum(q)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_bool_answers_match_python_eval(depth):
    task, data = samples("bool", depth=depth)
    depths = set()
    for q, a in data:
        assert a == [str(python_bool(q))]
        d = nesting(q)
        assert 1 <= d <= depth and len(q) <= task.max_question_len
        depths.add(d)
    assert depths == set(range(1, depth + 1))
    ones = sum(a == ["1"] for _, a in data) / len(data)
    assert 0.3 < ones < 0.7  # not a constant answer


def test_issue_example_evaluates_to_one():
    assert python_bool("( + ( * 0 1 ) ( * 1 1 ) )".split()) == 1


def test_heldout_split_is_disjoint_and_fixed():
    task = make_task("q")
    rng = random.Random(0)
    train = {tuple(draw(task, rng, heldout=False)[0]) for _ in range(2000)}
    held = {tuple(draw(task, rng, heldout=True)[0]) for _ in range(2000)}
    assert train.isdisjoint(held)
    assert all(is_heldout(list(q)) for q in held)
    fraction = sum(is_heldout(task.sample(rng)[0]) for _ in range(20000)) / 20000
    assert 0.08 < fraction < 0.12


def test_bool_split_keeps_the_depth_mix():
    task = make_task("bool", depth=4)
    rng = random.Random(2)
    for heldout in (True, False):
        data = [draw(task, rng, heldout=heldout)[0] for _ in range(2000)]
        counts = [sum(nesting(q) == d for q in data) for d in range(1, 5)]
        assert all(400 < c < 600 for c in counts), counts  # uniform over depths 1..4, as generated
        deep = [q for q in data if nesting(q) >= 2]
        assert all(is_heldout(q) == heldout for q in deep)
    assert not task.splittable(1) and task.splittable(2)  # the 8 depth-1 expressions are not split


def test_tiny_question_space_reports_a_clear_error():
    task = make_task("reverse", length=1)  # ten questions: the evaluation part may be empty or tiny
    rng = random.Random(0)
    held = [q for q in (task.sample(rng)[0] for _ in range(200)) if is_heldout(q)]
    if not held:
        with pytest.raises(ValueError, match="too few distinct questions"):
            draw(task, rng, heldout=True, max_tries=100)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_task_parameters(bad):
    with pytest.raises(ValueError, match="positive integer"):
        make_task("sort", length=bad)
    with pytest.raises(ValueError, match="unknown task"):
        make_task("parity")


@pytest.mark.parametrize("formulation", ["causal", "nar"])
def test_encoding_masks_exactly_the_answer(formulation):
    task = make_task("bool", depth=3)
    vocab = Vocab(task)
    length = block_size(task, formulation)
    rng = random.Random(3)
    for _ in range(200):
        q, a = task.sample(rng)
        x, y, mask = encode_example(vocab, q, a, formulation, length)
        assert len(x) == len(y) == len(mask) == length
        picked = [vocab.tokens[t] for t, m in zip(y, mask, strict=True) if m]
        assert picked == a
        if formulation == "nar":  # the answer must not leak into the input
            start = len(q) + 1
            assert vocab.decode(x[start:start + len(a)]) == [MASK] * len(a)
            assert vocab.decode(x[:len(q)]) == q
        else:  # the input holds the question, "=", then all answer tokens but the last
            assert vocab.decode(x[:len(q) + len(a)]) == q + ["="] + a[:-1]
        assert all(t == vocab.ids[PAD] for t in x[len(q) + 1 + len(a):])


@pytest.mark.parametrize("formulation", ["causal", "nar"])
def test_intermediate_targets_are_subexpression_values(formulation):
    task = make_task("bool", depth=4)
    vocab = Vocab(task)
    rng = random.Random(4)
    for _ in range(200):
        q, a = task.sample(rng)
        x, y, mask = encode_example(vocab, q, a, formulation, block_size(task, formulation),
                                    task.intermediate(q))
        for i, t in enumerate(q):
            if t == ")":  # the sub-expression that closes here, evaluated independently
                start, level = i, 0
                while True:
                    level += (q[start] == ")") - (q[start] == "(")
                    if level == 0:
                        break
                    start -= 1
                assert mask[i] == 1.0 and vocab.tokens[y[i]] == str(python_bool(q[start:i + 1]))
            else:
                assert mask[i] == 0.0
        assert [vocab.tokens[t] for t, m in zip(y[len(q):], mask[len(q):], strict=True) if m] == a


def test_loader_batches_resume_exactly():
    task = make_task("bool", depth=4)
    loader = ProblemLoader(task, "causal", 16, seed=5)
    loader.next_batch()
    state = loader.state_dict()
    x1, y1, m1 = loader.next_batch()
    loader.load_state_dict(state)
    x2, y2, m2 = loader.next_batch()
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(m1, m2)
    assert x1.dtype == y1.dtype == torch.int64 and m1.dtype == torch.float32
    assert m1.sum() == 16 and x1.shape[1] <= block_size(task, "causal")  # one answer token per row


class Oracle(torch.nn.Module):
    """Stands in for a model: puts all logit mass on the right answer, reading only the question.

    Lets the test check that predict() reads the logits at the right positions for rows of different
    question lengths, in both formulations.
    """

    def __init__(self, task, vocab, formulation, solve):
        super().__init__()
        self.config = type("C", (), {"block_size": block_size(task, formulation)})()
        self.vocab, self.causal, self.solve = vocab, formulation == "causal", solve
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(*x.shape, len(self.vocab.tokens))
        for i, row in enumerate(x.tolist()):
            eq = row.index(self.vocab.equals)
            answer = self.vocab.encode(self.solve(self.vocab.decode(row[:eq])))
            first = eq if self.causal else eq + 1  # where answer token 0 is read
            for j, t in enumerate(answer):
                if first + j < x.shape[1]:
                    logits[i, first + j, t] = 1.0
        return logits, None


@pytest.mark.parametrize("formulation", ["causal", "nar"])
@pytest.mark.parametrize("name,solve", [("bool", lambda q: [str(python_bool(q))]),
                                        ("reverse", lambda q: q[::-1]),
                                        ("add", lambda q: list(str(python_sum(q)).zfill(5)))])
def test_predict_reads_answers_at_the_right_positions(formulation, name, solve):
    task = make_task(name)
    vocab = Vocab(task)
    rng = random.Random(7)
    data = [task.sample(rng) for _ in range(40)]
    got = predict(Oracle(task, vocab, formulation, solve), vocab, [q for q, _ in data], task.answer_len,
                  formulation, batch_size=16)
    assert got == [a for _, a in data]


def test_settings_reject_bad_formulation():
    with pytest.raises(ValueError, match="formulation"):
        settings("q", formulation="bidirectional")
    assert settings("q", quick=True, steps=5)["steps"] == 5


def test_cli_rejects_mismatched_options(capsys):
    from nano.problem.__main__ import main

    assert main(["reverse", "--depth", "3"]) == 2
    assert "--depth" in capsys.readouterr().err


def test_intermediate_targets_only_where_a_task_has_them(tmp_path):
    from nano.problem import solve

    with pytest.raises(ValueError, match="no intermediate targets"):
        solve("q", intermediate=True, steps=1, out_dir=tmp_path, log=False)
    assert make_task("sort").intermediate(list("123")) is None
