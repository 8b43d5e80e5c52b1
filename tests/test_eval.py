"""nano.eval: perplexity and bits per character against PyTorch on the same windows, KL divergence (zero
against itself, equal to a PyTorch computation otherwise), multiple-choice scoring and exam files, the
Wilson interval, the command line and its JSON report."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import subprocess_env
from eval_models import TEXT, export, random_model, tokenizer
from nano.engine import Engine
from nano.eval import McSettings, kl_divergence, load_exam, multiple_choice, perplexity, wilson_interval
from nano.eval.exams import ExamError, Question, parse_exam_bank
from nano.eval.mc import build_prompts, summarize_mc
from nano.eval.windows import sliding_windows

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    tok = tokenizer()
    base = random_model(0, tok.vocab_size)
    other = random_model(0, tok.vocab_size)
    with torch.no_grad():  # a drifted copy of the base: the same weights plus noise
        g = torch.Generator().manual_seed(1)
        for p in other.parameters():
            p.add_(0.05 * p.std() * torch.randn(p.shape, generator=g))
    return dict(tok=tok, base=base, other=other, base_file=export(base, tok, tmp / "base.bin"),
                other_file=export(other, tok, tmp / "other.bin"), tmp=tmp)


def torch_log_probs(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return F.log_softmax(model(torch.tensor([ids]))[0][0].double(), dim=-1)


def torch_window_nll(model, seq, context, stride) -> float:
    """The reference: each window run through nano.model in PyTorch, scored targets summed."""
    nll = 0.0
    for w in sliding_windows(len(seq), context, stride):
        lp = torch_log_probs(model, seq[w.start:w.end])
        targets = torch.tensor(seq[w.first:w.end + 1])
        nll -= lp[torch.arange(w.skip, w.end - w.start), targets].sum().item()
    return nll


# ---- windows ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,context,stride", [(2, 1, 1), (10, 4, 1), (10, 4, 4), (100, 16, 5),
                                                   (17, 16, 8), (16, 16, 8), (5, 16, 8), (200, 7, 3)])
def test_windows_score_every_target_once_with_bounded_context(length, context, stride):
    windows = sliding_windows(length, context, stride)
    scored = [t for w in windows for t in range(w.first, w.end + 1)]
    assert scored == list(range(1, length))  # every target once, in order
    for k, w in enumerate(windows):
        assert 0 <= w.start < w.first <= w.end < length
        assert w.end - w.start <= context  # inputs fit the context
        assert w.scored == w.end + 1 - w.first
        if k > 0:
            assert w.scored <= stride
            assert w.first - w.start >= context - stride + 1  # the promised overlap


def test_windows_refuse_bad_settings():
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(10, 4, 5)
    with pytest.raises(ValueError, match="context"):
        sliding_windows(10, 0, 1)
    assert sliding_windows(1, 4, 2) == []


# ---- ppl ----------------------------------------------------------------------------------------------
def test_ppl_equals_pytorch_on_one_window(models):
    """Text shorter than the block: one window, compared with one plain PyTorch pass over the sequence."""
    tok, text = models["tok"], TEXT[:30]
    seq = [tok.token_to_id("<|eos|>"), *tok.encode(text)]
    assert len(seq) <= 48
    lp = torch_log_probs(models["base"], seq[:-1])
    nll = -lp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])].sum().item()
    r = perplexity(models["base_file"], [text], show_progress=False)["total"]
    assert r["tokens"] == len(seq) - 1
    assert r["ppl"] == pytest.approx(math.exp(nll / (len(seq) - 1)), rel=1e-4)
    assert r["bits_per_char"] == pytest.approx(nll / math.log(2) / len(text), rel=1e-4)
    assert r["bits_per_byte"] == pytest.approx(nll / math.log(2) / len(text.encode()), rel=1e-4)
    assert r["bits_per_byte"] < r["bits_per_char"]  # multi-byte characters in the text


@pytest.mark.parametrize("context,stride", [(48, 24), (48, 48), (20, 7), (8, 1)])
def test_ppl_equals_pytorch_on_sliding_windows(models, context, stride):
    """The f32 engine's logits match PyTorch's to about 1e-5 (tests/test_format.py), so the mean NLL over
    hundreds of tokens agrees far inside 1e-4 relative."""
    tok = models["tok"]
    texts = [TEXT, TEXT[40:] + TEXT[:40]]
    r = perplexity(models["base_file"], texts, context=context, stride=stride, show_progress=False)
    nlls = [torch_window_nll(models["base"], [tok.token_to_id("<|eos|>"), *tok.encode(t)], context, stride)
            for t in texts]
    tokens = sum(len(tok.encode(t)) for t in texts)
    assert r["total"]["tokens"] == tokens
    assert r["total"]["ppl"] == pytest.approx(math.exp(sum(nlls) / tokens), rel=1e-4)
    for row, nll, text in zip(r["texts"], nlls, texts, strict=True):
        assert row["nll"] == pytest.approx(nll, rel=1e-4)
        assert row["chars"] == len(text) and row["bytes"] == len(text.encode("utf-8"))
    assert r["settings"]["context"] == context and r["settings"]["stride"] == stride


def test_longer_context_lowers_nothing_it_should_not(models):
    """Different windows give different (but finite, positive) figures; the window plan matters."""
    a = perplexity(models["base_file"], [TEXT], context=48, stride=24, show_progress=False)["total"]
    b = perplexity(models["base_file"], [TEXT], context=8, stride=8, show_progress=False)["total"]
    assert a["tokens"] == b["tokens"] and a["nll"] != b["nll"]


def test_ppl_refuses_bad_settings(models):
    with pytest.raises(ValueError, match="block size"):
        perplexity(models["base_file"], [TEXT], context=49, show_progress=False)
    with pytest.raises(ValueError, match="stride"):
        perplexity(models["base_file"], [TEXT], context=8, stride=9, show_progress=False)
    with pytest.raises(ValueError, match="no special token"):
        perplexity(models["base_file"], [TEXT], start="<|nothing|>", show_progress=False)
    with pytest.raises(TypeError, match="sequence of strings"):
        perplexity(models["base_file"], TEXT, show_progress=False)


def test_token_logprobs_of_the_engine(models):
    tok = models["tok"]
    ids = tok.encode(TEXT[:20])
    eng = Engine(models["base_file"], threads=1)
    lp, greedy = eng.token_logprobs(ids, first=3)
    ref = torch_log_probs(models["base"], ids[:-1])
    rows = torch.arange(2, len(ids) - 1)
    np.testing.assert_allclose(lp, ref[rows, torch.tensor(ids[3:])].numpy(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(greedy, (ref[rows].argmax(-1) == torch.tensor(ids[3:])).numpy())
    full = eng.log_probs(ids)
    np.testing.assert_allclose(np.exp(full).sum(-1), 1.0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="first"):
        eng.token_logprobs(ids, first=0)


# ---- kl -----------------------------------------------------------------------------------------------
def test_kl_of_a_model_against_itself_is_zero(models):
    r = kl_divergence(Engine(models["base_file"], threads=1), Engine(models["base_file"], threads=1), [TEXT],
                      show_progress=False)
    assert r["tokens"] > 100
    assert r["kl_mean"] == 0.0 and r["kl_p99"] == 0.0 and r["kl_max"] == 0.0
    assert r["top1_agreement"] == 1.0 and r["delta_ppl"] == 0.0


def test_kl_equals_pytorch(models):
    """KL(base || drifted) per token from PyTorch's F.kl_div on the same windows. Engine and PyTorch
    logits differ by about 1e-5, which moves a KL of order 1e-2 by well under 1e-3 relative."""
    tok = models["tok"]
    seq = [tok.token_to_id("<|eos|>"), *tok.encode(TEXT)]
    kls, agree, nll_b, nll_m = [], 0, 0.0, 0.0
    for w in sliding_windows(len(seq), 48, 24):
        lb = torch_log_probs(models["base"], seq[w.start:w.end])[w.skip:]
        lm = torch_log_probs(models["other"], seq[w.start:w.end])[w.skip:]
        kls.append(F.kl_div(lm, lb, log_target=True, reduction="none").sum(-1))
        agree += (lb.argmax(-1) == lm.argmax(-1)).sum().item()
        t = torch.tensor(seq[w.first:w.end + 1])
        nll_b -= lb[torch.arange(len(t)), t].sum().item()
        nll_m -= lm[torch.arange(len(t)), t].sum().item()
    kl = torch.cat(kls).numpy()
    r = kl_divergence(models["base_file"], models["other_file"], [TEXT], context=48, stride=24,
                      show_progress=False)
    assert r["tokens"] == len(kl)
    assert 1e-4 < r["kl_mean"] < 1.0  # the drift is real but small
    assert r["kl_mean"] == pytest.approx(kl.mean(), rel=1e-3)
    assert r["kl_p99"] == pytest.approx(np.percentile(kl, 99), rel=1e-3)
    assert r["kl_max"] == pytest.approx(kl.max(), rel=1e-3)
    assert abs(r["top1_agreement"] - agree / len(kl)) <= 2 / len(kl)  # a near tie may flip
    n = len(kl)
    assert r["ppl_base"] == pytest.approx(math.exp(nll_b / n), rel=1e-4)
    assert r["delta_ppl"] == pytest.approx(math.exp(nll_m / n) - math.exp(nll_b / n), rel=1e-3, abs=1e-6)


def test_kl_refuses_different_vocabularies(models, tmp_path):
    from nano.tokenizer import Tokenizer

    tok = models["tok"]
    other_tok = Tokenizer.from_tokens(list(reversed(tok.tokens()[7:])) + tok.tokens()[:7],
                                      [False] * (tok.vocab_size - 7) + [True] * 7)
    other = export(models["base"], other_tok, tmp_path / "v.bin")
    with pytest.raises(ValueError, match="vocabularies"):
        kl_divergence(models["base_file"], other, [TEXT], show_progress=False)


# ---- exams --------------------------------------------------------------------------------------------
BANK = """[I]Q1
[Q]天地是什么？
[A]宇宙
[B]日月
[C]寒暑
[D]雲雨
[P]

[I]Q2
[Q]The quick brown?
[A]fox
[B]dog
[C]box
[D]jugs
[P]fig2.jpg
"""


def test_exam_bank_format():
    qs = parse_exam_bank(BANK, "bank.txt")
    assert [q.id for q in qs] == ["Q1", "Q2"]
    assert qs[0].options == ("宇宙", "日月", "寒暑", "雲雨") and qs[0].answer == 0
    assert qs[1].image == "fig2.jpg" and qs[0].image == ""
    with pytest.raises(ExamError, match=r"bank.txt:\d+: a record needs \[Q\] and \[A\]"):
        parse_exam_bank("[I]x\n[B]y\n[C]z", "bank.txt")
    with pytest.raises(ExamError, match=r"bank.txt:3: expected a \[X\] field"):
        parse_exam_bank("[I]x\n[Q]y\nnot a field\n[A]a\n[B]b", "bank.txt")


def test_csv_and_jsonl_formats(tmp_path):
    (tmp_path / "e.csv").write_text("id,question,A,B,C,D,answer,explanation\n"
                                    "0,天地？,日,月,天,地,C,\n1,\"q, with comma\",a,b,c,d,a,x\n", encoding="utf-8")
    qs = load_exam(tmp_path / "e.csv")
    assert [(q.id, q.question, q.answer) for q in qs] == [("0", "天地？", 2), ("1", "q, with comma", 0)]
    (tmp_path / "cmmlu.csv").write_text(",Question,A,B,C,D,Answer\n0,q?,a,b,c,d,D\n", encoding="utf-8")
    assert load_exam(tmp_path / "cmmlu.csv")[0].answer == 3
    (tmp_path / "e.jsonl").write_text('{"question": "q", "choices": ["x", "y", "z"], "answer": 1}\n\n'
                                      '{"question": "r", "A": "1", "B": "2", "answer": "B"}\n', encoding="utf-8")
    qs = load_exam(tmp_path / "e.jsonl")
    assert qs[0].options == ("x", "y", "z") and qs[0].answer == 1 and qs[1].answer == 1 and qs[1].id == "#2"
    for bad, words in [('{"question": "q", "A": "1", "B": "2", "answer": "C"}', "not one of the 2 options"),
                       ('{"question": "q", "A": "1", "B": "2"}', "needs 'question' and 'answer'"),
                       ('{"question": "q", "A": "1", "answer": "A"}', "at least two options"),
                       ("[1, 2]", "not a JSON object"), ("{", "not JSON")]:
        (tmp_path / "bad.jsonl").write_text(bad + "\n", encoding="utf-8")
        with pytest.raises(ExamError, match=words):
            load_exam(tmp_path / "bad.jsonl")
    (tmp_path / "e.xml").write_text("<x/>")
    with pytest.raises(ExamError, match="unknown exam format"):
        load_exam(tmp_path / "e.xml")


def test_shared_exam_bank_loads(shared_data):
    qs = load_exam(shared_data / "exam_amateur_radio.txt")
    assert len(qs) == 1237
    assert all(len(q.options) == 4 and q.answer == 0 for q in qs)
    assert sum(1 for q in qs if q.image) == 53


# ---- mc -----------------------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1.959964**2 / (10 + 1.959964**2), rel=1e-6)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson_interval(300, 1237)
    assert lo < 300 / 1237 < hi and hi - lo < 0.05
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_summary_follows_lm_eval_definitions():
    qs = [Question("a", "q", ("xx", "y"), 0), Question("b", "q", ("天天", "y"), 0), Question("c", "q", ("u", "v"), 1)]
    prompts = build_prompts(qs, McSettings(shuffle=False))
    # a: acc picks y (-1 > -1.5); per char xx = -0.75 > -1 picks xx; b: bytes 6 vs 1; c: a tie goes first
    r = summarize_mc(prompts, [[-1.5, -1.0], [-1.5, -1.0], [-2.0, -2.0]])
    assert [i["pred"] for i in r["items"]] == [1, 1, 0]
    assert [i["pred_norm"] for i in r["items"]] == [0, 0, 0]
    assert r["acc"] == 0 and r["acc_norm"] == pytest.approx(2 / 3) and r["acc_bytes"] == pytest.approx(2 / 3)
    assert r["chance"] == 0.5 and r["n"] == 3


def test_prompts_shuffle_and_shots():
    qs = parse_exam_bank(BANK * 1 + "\n" + BANK.replace("Q1", "Q3").replace("Q2", "Q4"), "b")
    plain = build_prompts(qs, McSettings(shuffle=False))
    assert plain[0].context == "天地是什么？" and plain[0].continuations[0] == " 宇宙" and plain[0].answer == 0
    shuffled = build_prompts(qs, McSettings(seed=3))
    assert shuffled == build_prompts(qs, McSettings(seed=3))  # seeded
    for p, q in zip(shuffled, qs, strict=True):
        assert sorted(p.order) == [0, 1, 2, 3] and p.options[p.answer] == q.options[q.answer]
    assert len({p.order for p in build_prompts(qs * 10, McSettings(seed=0))}) > 1  # it does shuffle
    two = build_prompts(qs, McSettings(shots=2, shuffle=False))
    for p, q in zip(two, qs, strict=True):
        assert len(p.shots) == 2 and q not in p.shots  # never the question asked
        assert p.context.endswith("\n\n" + q.question)
        assert all(f"{s.question} {s.options[0]}\n\n" in p.context for s in p.shots)
    assert build_prompts(qs[:1], McSettings(skip_images=True))[0].id == "Q1"
    assert len(build_prompts(qs, McSettings(skip_images=True))) == 2
    with pytest.raises(ValueError, match="needs 4 other questions"):
        build_prompts(qs, McSettings(shots=4))


def test_mc_scores_each_option_as_pytorch_does(models):
    tok = models["tok"]
    qs = parse_exam_bank(BANK, "b")
    eos, im, rm = (tok.token_to_id(t) for t in ("<|eos|>", "<|instruct_mark|>", "<|response_mark|>"))
    for settings in (McSettings(seed=1), McSettings(seed=1, instruct=True, shots=1)):
        r = multiple_choice(models["base_file"], qs, settings, show_progress=False)
        prompts = build_prompts(qs, settings)
        for p, item in zip(prompts, r["items"], strict=True):
            for j, option in enumerate(p.options):
                if settings.instruct:
                    (s,) = p.shots
                    context = [im, *tok.encode(s.question), rm, *tok.encode(s.options[s.answer]), eos,
                               im, *tok.encode(p.question.question), rm]
                    cont = tok.encode(option)
                else:
                    context, cont = [eos, *tok.encode(p.context)], tok.encode(" " + option)
                lp = torch_log_probs(models["base"], (context + cont)[:-1])
                ref = lp[torch.arange(len(context) - 1, len(context) + len(cont) - 1), torch.tensor(cont)].sum()
                assert item["loglikelihoods"][j] == pytest.approx(ref.item(), rel=1e-4)
        assert r["chance"] == 0.25 and r["n"] == 2
        assert r["settings"]["instruct"] == settings.instruct


def test_continuation_longer_than_the_block_is_scored_in_windows(models):
    """An option longer than the context: every one of its tokens scored once, in the windows of
    nano.eval.windows (stride half the block), equal to PyTorch on those windows."""
    from nano.eval.scoring import loglikelihood

    tok = models["tok"]
    context, cont = [tok.token_to_id("<|eos|>"), *tok.encode("天地")], tok.encode(TEXT[:80])
    assert len(cont) > 48
    seq = context + cont
    ref = 0.0
    for w in sliding_windows(len(seq), 48, 24):
        lp = torch_log_probs(models["base"], seq[w.start:w.end])
        for t in range(max(w.first, len(context)), w.end + 1):
            ref += lp[t - w.start - 1, seq[t]].item()
    ll, _ = loglikelihood(Engine(models["base_file"], threads=1), context, cont)
    assert ll == pytest.approx(ref, rel=1e-4)
    # one that fits is scored in one pass with the oldest context dropped
    long_context = [tok.token_to_id("<|eos|>"), *tok.encode(TEXT[:60])]
    ll, _ = loglikelihood(Engine(models["base_file"], threads=1), long_context, cont[:10])
    ids = (long_context + cont[:10])[-49:]
    lp = torch_log_probs(models["base"], ids[:-1])
    assert ll == pytest.approx(sum(lp[j - 1, ids[j]].item() for j in range(39, 49)), rel=1e-4)


# ---- command line -------------------------------------------------------------------------------------
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "nano.eval", *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)


def test_cli_ppl_kl_mc_write_json_reports(models, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = run_cli("ppl", models["base_file"], text, "--context", 20, "--stride", 7, "--threads", 1,
                  "--json", tmp_path / "ppl.json")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "ppl.json").read_text(encoding="utf-8"))
    direct = perplexity(models["base_file"], [TEXT], context=20, stride=7, show_progress=False)
    assert report["total"]["ppl"] == pytest.approx(direct["total"]["ppl"], rel=1e-12)
    assert "bits_per_char" in out.stdout

    out = run_cli("kl", models["base_file"], models["other_file"], text, "--json", tmp_path / "kl.json",
                  "--no-progress")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "kl.json").read_text())["kl_mean"] > 0

    exam = tmp_path / "exam.txt"
    exam.write_text(BANK, encoding="utf-8")
    out = run_cli("mc", models["base_file"], exam, "--json", tmp_path / "mc.json", "--shots", 1, "--instruct")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "mc.json").read_text(encoding="utf-8"))
    assert report["n"] == 2 and report["settings"]["shots"] == 1 and len(report["acc_ci95"]) == 2


def test_cli_errors_are_clear_and_leave_no_report(models, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe not utf-8")
    out = run_cli("ppl", models["base_file"], bad, "--json", tmp_path / "r.json")
    assert out.returncode == 2 and "not valid UTF-8" in out.stderr
    out = run_cli("mc", models["base_file"], tmp_path / "missing.txt", "--json", tmp_path / "r.json")
    assert out.returncode == 2 and "missing.txt" in out.stderr
    out = run_cli("ppl", tmp_path / "nope.bin", bad)
    assert out.returncode == 2 and "error:" in out.stderr
    assert not (tmp_path / "r.json").exists()
    assert list(tmp_path.glob(".r.json.*")) == []
    # the report never replaces an input or a file nano.eval did not write, and says so before any work
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    for target in (text, models["base_file"]):
        before = target.read_bytes()
        out = run_cli("ppl", models["base_file"], text, "--json", target)
        assert out.returncode == 2 and "refusing" in out.stderr and target.read_bytes() == before
    out = run_cli("ppl", models["base_file"], text, "--json", tmp_path)
    assert out.returncode == 2 and "is a directory" in out.stderr
    assert run_cli("ppl", models["base_file"], text, "--json", tmp_path / "r.json").returncode == 0
    assert run_cli("ppl", models["base_file"], text, "--json", tmp_path / "r.json").returncode == 0  # its own


def test_json_report_is_replaced_whole_or_not_at_all(tmp_path):
    from nano.eval.report import write_json

    path = tmp_path / "r.json"
    write_json(path, {"ppl": float("nan"), "x": [1.5, float("inf")]})
    assert json.loads(path.read_text()) == {"ppl": None, "x": [1.5, None]}  # JSON has no NaN
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})  # fails while serialising: the old report stays
    assert json.loads(path.read_text())["ppl"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
