"""The lm-evaluation-harness adapter (nano.eval.harness): lm-eval's own command line, through
``python -m nano.eval lm-eval``, on the local task in tests/lm_eval_task/ gives exactly the accuracy and
the option log-likelihoods of ``nano.eval mc`` on the same items; loglikelihood_rolling and generate_until
agree with nano.eval.ppl and nano.Engine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="lm-eval is not installed (python -m pip install lm-eval)")

from conftest import subprocess_env  # noqa: E402
from eval_models import TEXT, export, random_model, tokenizer  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from nano.engine import Engine  # noqa: E402
from nano.eval import McSettings, load_exam, multiple_choice, perplexity  # noqa: E402
from nano.eval.harness import NanoLM  # noqa: E402

TASK_DIR = Path(__file__).resolve().parent / "lm_eval_task"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    tok = tokenizer()
    return export(random_model(5, tok.vocab_size, block_size=64), tok, tmp_path_factory.mktemp("lm") / "m.bin")


def test_lm_eval_cli_gives_the_accuracy_of_nano_eval_mc(model_file, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "nano.eval", "lm-eval", "--model", "nano", "--model_args",
         f"path={model_file},threads=1", "--tasks", "nano_mc_local", "--include_path", str(TASK_DIR),
         "--output_path", str(tmp_path / "out"), "--log_samples"],
        cwd=TASK_DIR, capture_output=True, text=True, timeout=600,
        env=subprocess_env(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
    assert out.returncode == 0, out.stderr[-4000:]
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    (samples_file,) = (tmp_path / "out").rglob("samples_nano_mc_local_*.jsonl")
    results = json.loads(results_file.read_text(encoding="utf-8"))["results"]["nano_mc_local"]
    samples = sorted((json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines()),
                     key=lambda s: s["doc_id"])

    questions = load_exam(TASK_DIR / "nano_mc_local.jsonl")
    mine = multiple_choice(model_file, questions, McSettings(shuffle=False), threads=1, show_progress=False)
    assert mine["n"] == len(samples) == 12
    assert results["acc,none"] == mine["acc"]
    assert results["acc_norm,none"] == mine["acc_norm"]
    # a random model is not at 0 or 1 on these items, so the equality above compares real predictions
    assert 0 < mine["acc"] < 1
    for sample, item in zip(samples, mine["items"], strict=True):
        lls = [float(resp[0][0]) for resp in sample["resps"]]  # the log writes them as strings
        assert lls == item["loglikelihoods"]  # the same floats: one scoring path


def request(kind, *args):
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0)


def test_rolling_loglikelihood_is_the_ppl_sum(model_file):
    lm = NanoLM(path=str(model_file), threads=1)
    (ll,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", TEXT)], disable_tqdm=True)
    r = perplexity(model_file, [TEXT], stride=64, threads=1, show_progress=False)
    assert ll == pytest.approx(-r["total"]["nll"], rel=1e-12)
    lm = NanoLM(path=str(model_file), threads=1, context=16, stride=4)
    (ll,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", TEXT)], disable_tqdm=True)
    r = perplexity(model_file, [TEXT], context=16, stride=4, threads=1, show_progress=False)
    assert ll == pytest.approx(-r["total"]["nll"], rel=1e-12)


def test_generate_until_is_greedy_generation_cut_at_the_stop_string(model_file):
    lm = NanoLM(path=str(model_file), threads=1)
    eng = Engine(model_file, threads=1)
    eos = eng.tokenizer.token_to_id("<|eos|>")
    full = "".join(eng.generate([eos, *eng.tokenizer.encode("天地")], max_new_tokens=20, temperature=0))
    assert len(full) > 4
    stop = full[3:5]
    (text,) = lm.generate_until([request("generate_until", "天地", {"until": [stop], "max_gen_toks": 20})],
                                disable_tqdm=True)
    assert text == full[:full.index(stop)]
    (text,) = lm.generate_until([request("generate_until", "天地", {"until": [], "max_gen_toks": 20})],
                                disable_tqdm=True)
    assert text == full


def test_adapter_refuses_bad_arguments(model_file):
    with pytest.raises(ValueError, match="path="):
        NanoLM()
    with pytest.raises(ValueError, match="unknown nano model arguments: colour"):
        NanoLM(path=str(model_file), colour="red")
    with pytest.raises(ValueError, match="no special token"):
        NanoLM(path=str(model_file), start="<|nope|>")
