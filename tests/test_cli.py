"""The `nano-infer` binary as a real subprocess: generation, exit codes and messages on bad input."""

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from nano.export import export_checkpoint, export_lora
from nano.lora import LoraConfig, apply_lora, lora_modules, lora_payload
from test_format import TEXT, small_model, small_tokenizer

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parent.parent


def nano_infer_binary() -> Path:
    """Builds (incrementally) and returns the release binary; skips when no Rust toolchain is present."""
    if shutil.which("cargo") is None:
        pytest.skip("cargo not found: cannot build nano-infer")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    proc = subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "nano-infer"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    exe = target / "release" / "nano-infer"
    assert exe.exists(), exe
    return exe


@pytest.fixture(scope="session")
def binary() -> Path:
    return nano_infer_binary()


def run(binary, *args, stdin=None):
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, input=stdin,
                          timeout=120)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    tok, model = small_tokenizer(), small_model(seed=5)
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    return export_checkpoint(ckpt, tmp_path_factory.mktemp("cli") / "m.bin"), model, tok


def test_prompt_generation_matches_pytorch_and_reports_speed(binary, model_file):
    path, model, tok = model_file
    proc = run(binary, path, "--prompt", TEXT[:6], "-n", 12, "-t", 0, "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    want = tok.stream_decoder(skip_special=True)
    ids = list(model.generate(tok.encode(TEXT[:6]), 12, temperature=0, eos_id=tok.token_to_id("<|eos|>")))
    assert proc.stdout == "".join(want.push(i) for i in ids) + "\n"
    assert "tokens/s" in proc.stderr


def test_repl_reads_prompts_from_stdin(binary, model_file):
    path, _, _ = model_file
    one = run(binary, path, "--prompt", TEXT[:3], "-n", 5, "-t", 0.8, "-s", 7, "-q")
    repl = run(binary, path, "-n", 5, "-t", 0.8, "-s", 7, "-q", stdin=f"{TEXT[:3]}\n\n{TEXT[:3]}\n")
    assert repl.returncode == 0, repl.stderr
    assert repl.stdout == one.stdout * 2  # same seed, same text; the empty line is skipped


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "empty-prompt", "long-prompt", "bad-lora",
                                  "bad-option"])
def test_bad_input_exits_nonzero_with_a_message(binary, model_file, tmp_path, case):
    path, _, _ = model_file
    args = [path, "--prompt", TEXT[:4], "-n", 3]
    if case == "missing":
        args[0] = tmp_path / "nope.bin"
    elif case == "garbage":
        args[0] = tmp_path / "g.bin"
        args[0].write_bytes(b"\x00" * 1000)
    elif case == "truncated":
        args[0] = tmp_path / "t.bin"
        args[0].write_bytes(path.read_bytes()[:5000])
    elif case == "empty-prompt":
        args[2] = ""
    elif case == "long-prompt":
        args[2] = TEXT * 2
    elif case == "bad-lora":
        args += ["-l", path]
    elif case == "bad-option":
        args += ["-t", "-1"]
    proc = run(binary, *args)
    assert proc.returncode != 0
    assert proc.stderr.strip() and "panicked" not in proc.stderr, proc.stderr
    assert proc.stdout == ""


LADDER = re.compile(r"threads=(\d+) prefill=([\d.]+) tok/s decode=([\d.]+) tok/s bytes/token=(\d+) "
                    r"GB/s=([\d.]+) limit=(\d+)%")
LORA_OVERHEAD = re.compile(r"threads=(\d+) lora_overhead=(-?[\d.]+)% pairs=(\d+) \((.*)\)")


def random_lora_file(model, path, rank=4):
    """A nano-lora plug-in for `model` on the attention projections, B random (apply_lora zeroes it)."""
    adapted = apply_lora(copy.deepcopy(model), LoraConfig(rank=rank, alpha=2.0 * rank))
    torch.manual_seed(3)
    with torch.no_grad():
        for m in lora_modules(adapted).values():
            m.lora_B.normal_(0, 0.1)
    return export_lora(lora_payload(adapted), path)


def test_bench_prints_the_ladder_and_the_lora_overhead(binary, model_file, tmp_path):
    path, model, _ = model_file
    lora = random_lora_file(model, tmp_path / "lora.bin")
    proc = run(binary, "bench", path, "--threads", "1,2", "--prompt-tokens", 8, "--decode-tokens", 8,
               "--repeat", 1, "--lora", lora, "--lora-pairs", 3)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout
    # An f32 file with a tied classifier: one decode step reads every parameter once, 4 bytes each.
    weight_bytes = 4 * sum(p.numel() for p in model.parameters())
    for threads, ladder, overhead in zip([1, 2], lines[::2], lines[1::2], strict=True):
        m = LADDER.fullmatch(ladder)
        assert m and int(m[1]) == threads, ladder
        prefill, decode, gbs = float(m[2]), float(m[3]), float(m[5])
        assert prefill > 0 and decode > 0
        assert int(m[4]) == weight_bytes
        assert abs(gbs - weight_bytes * decode / 1e9) <= 0.006
        m = LORA_OVERHEAD.fullmatch(overhead)
        assert m and int(m[1]) == threads and int(m[3]) == 3, overhead
        each = [float(v) for v in m[4].split(", ")]
        assert len(each) == 3 and each == sorted(each)
        assert float(m[2]) == pytest.approx(each[1], abs=0.051)  # the median of three


@pytest.mark.parametrize("threads", ["0", "10000", str(10**12), "2,0"])
def test_thread_counts_out_of_bounds_are_refused_before_starting(binary, model_file, threads):
    """`--threads 10000` used to start them all (load average 400) and 10**12 hung: now a message."""
    path, _, _ = model_file
    for args in (["bench", path, "--threads", threads], [path, "--prompt", TEXT[:3], "--threads", threads]):
        if "," in threads and args[0] != "bench":
            continue
        proc = run(binary, *args)
        assert proc.returncode != 0 and "threads must be between 1 and" in proc.stderr, proc.stderr
        assert proc.stdout == ""


def test_bench_on_a_one_token_context_is_an_error(binary, tmp_path):
    tok, model = small_tokenizer(), small_model(seed=1, block_size=1)
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    path = export_checkpoint(ckpt, tmp_path / "b1.bin")
    proc = run(binary, "bench", path, "--repeat", 1)
    assert proc.returncode == 1, proc.stderr
    assert "at least 2 tokens" in proc.stderr and "panicked" not in proc.stderr


def test_repl_reports_a_line_that_is_not_utf8_and_goes_on(binary, model_file):
    path, _, _ = model_file
    one = run(binary, path, "--prompt", TEXT[:3], "-n", 5, "-t", 0, "-q")
    stdin = b"\xff\xfe bad\n" + f"{TEXT[:3]}\n".encode()
    proc = subprocess.run([str(binary), str(path), "-n", "5", "-t", "0", "-q"], input=stdin,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert b"input line 1 is not valid UTF-8" in proc.stderr
    assert proc.stdout.decode() == one.stdout  # the next line is answered


def test_a_prompt_that_fills_the_context_says_so(binary, model_file):
    path, model, tok = model_file
    block = model.config.block_size
    prompt = next(TEXT[:n] for n in range(1, len(TEXT) + 1) if len(tok.encode(TEXT[:n])) == block)
    proc = run(binary, path, "--prompt", prompt, "-n", 5, "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "\n"
    assert f"fills the model's context of {block} tokens: nothing was generated" in proc.stderr
    assert "panicked" not in proc.stderr
