"""nano.shuffle / `python -m nano.data shuffle`: permutation, determinism, uniformity, memory, kills."""

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import nano
import numpy as np
import pytest
from nano.data import parse_size, shuffle

# Chi-square critical values at p = 0.001 (the seeds are fixed, so these tests are deterministic).
CHI2_001 = {5: 20.52, 23: 49.73}


def chi_square(counts, expected):
    counts = np.asarray(counts, dtype=float)
    return float(((counts - expected) ** 2 / expected).sum())


def write_lines(path: Path, n: int) -> list[bytes]:
    lines = [f"line {i} {'é' * (i % 5)}\n".encode() for i in range(n)]
    path.write_bytes(b"".join(lines))
    return lines


def test_parse_size():
    assert parse_size("256M") == 256 << 20
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("64KiB") == 64 << 10
    assert parse_size(4096) == 4096
    for bad in ("lots", "-1M", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


@pytest.mark.parametrize("pile_bytes", [None, 3000])
def test_text_records_permuted_nothing_lost(tmp_path, pile_bytes):
    src = tmp_path / "in.txt"
    lines = write_lines(src, 2000)
    out = tmp_path / "out.txt"
    summary = nano.shuffle([src], out, memory="4M", seed=1, _pile_bytes=pile_bytes)
    got = out.read_bytes().splitlines(keepends=True)
    assert summary["records"] == 2000 and summary["bytes"] == src.stat().st_size
    assert got != lines
    assert Counter(got) == Counter(lines)
    assert (summary["piles"] > 1) == (pile_bytes is not None)


def test_binary_records_permuted_nothing_lost(tmp_path):
    blocks = np.arange(500 * 65, dtype=np.uint16).reshape(500, 65)  # token blocks of 65 ids
    src = tmp_path / "blocks.bin"
    blocks.tofile(src)
    out = tmp_path / "out.bin"
    summary = shuffle(src, out, seed=2, record_size=130, _pile_bytes=20000)
    got = np.fromfile(out, dtype=np.uint16).reshape(500, 65)
    assert summary["records"] == 500
    assert not np.array_equal(got, blocks)
    # Every block intact (rows are never torn) and each appears exactly once.
    assert sorted(got[:, 0].tolist()) == blocks[:, 0].tolist()
    assert np.array_equal(got[np.argsort(got[:, 0])], blocks)


def test_same_seed_same_output_whatever_the_threads(tmp_path):
    """The smallest budget cuts the input into many 16 KiB scatter chunks, shared among the threads."""
    src = tmp_path / "in.txt"
    write_lines(src, 20000)
    outs = []
    for threads in (1, 2, 3):
        out = tmp_path / f"out{threads}.txt"
        shuffle([src], out, memory="1M", seed=7, threads=threads, _pile_bytes=8000)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    assert sorted(outs[0].splitlines()) == sorted(src.read_bytes().splitlines())
    shuffle([src], tmp_path / "other.txt", memory="1M", seed=8, _pile_bytes=8000)
    assert (tmp_path / "other.txt").read_bytes() != outs[0]


@pytest.mark.parametrize("pile_bytes", [None, 2])
def test_all_orders_equally_likely(tmp_path, pile_bytes):
    """4 records: each of the 24 orders over 720 seeds (30 expected), chi-square with 23 dof."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"a\nb\nc\nd\n")
    out = tmp_path / "out.txt"
    counts = Counter()
    for seed in range(720):
        shuffle(src, out, seed=seed, threads=1, _pile_bytes=pile_bytes)
        counts[out.read_bytes()] += 1
    orders = {b"".join(p) for p in itertools.permutations([b"a\n", b"b\n", b"c\n", b"d\n"])}
    assert set(counts) == orders
    assert chi_square(list(counts.values()), 30) < CHI2_001[23]


def test_pair_order_and_first_position_uniform(tmp_path):
    """6 records over several piles: who comes first (5 dof) and how often 0 precedes 1 (binomial)."""
    src = tmp_path / "in.txt"
    src.write_bytes(b"".join(f"{i}\n".encode() for i in range(6)))
    out = tmp_path / "out.txt"
    first, zero_before_one, runs = Counter(), 0, 600
    for seed in range(runs):
        shuffle(src, out, seed=seed, threads=1, _pile_bytes=4)
        order = out.read_bytes().split()
        first[order[0]] += 1
        zero_before_one += order.index(b"0") < order.index(b"1")
    assert chi_square([first[str(i).encode()] for i in range(6)], runs / 6) < CHI2_001[5]
    # 3.3 standard deviations of Binomial(600, 1/2) ~ p 0.001.
    assert abs(zero_before_one - runs / 2) < 3.3 * (runs / 4) ** 0.5


def run_cli_peak_rss(args: list[str]) -> tuple[int, int]:
    """Run the shuffle CLI in a child of a fresh Python; return (exit code, child's peak RSS in bytes)."""
    probe = (
        "import resource, subprocess, sys\n"
        f"rc = subprocess.run([sys.executable, '-m', 'nano.data', 'shuffle', *{args!r}]).returncode\n"
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    rc, peak = out.stdout.splitlines()[-1].split()
    return int(rc), int(peak)


def test_peak_memory_stays_within_budget(tmp_path):
    """An input 8x the budget: the process's peak RSS stays within its baseline plus the budget."""
    budget = 8 << 20
    big = tmp_path / "big.txt"
    lines = np.random.default_rng(0).integers(ord("a"), ord("z") + 1, size=(2_000_000, 32), dtype=np.uint8)
    lines[:, -1] = ord("\n")
    lines.tofile(big)
    size = big.stat().st_size
    assert size > 7 * budget
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("x\n")
    rc0, baseline = run_cli_peak_rss([str(tiny), "-o", str(tmp_path / "t.out"), "--memory", str(budget)])
    rc1, peak = run_cli_peak_rss([str(big), "-o", str(tmp_path / "big.out"), "--memory", str(budget)])
    assert rc0 == rc1 == 0
    assert (tmp_path / "big.out").stat().st_size == size
    assert peak - baseline <= budget, f"peak {peak >> 20} MiB, baseline {baseline >> 20} MiB"


def test_killed_run_leaves_no_output(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        for i in range(40):
            f.write(b"".join(b"%d %d payload payload payload\n" % (i, j) for j in range(50_000)))
    out, work = tmp_path / "out.txt", tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-m", "nano.data", "shuffle", str(big), "-o", str(out)]
    proc = subprocess.Popen([*cmd, "--memory", "2M", "--threads", "1", "--tmp-dir", str(work)])
    deadline = time.monotonic() + 30
    while not any(work.iterdir()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)  # wait until the piles exist: mid-run
    assert proc.poll() is None, "the shuffle ended before it could be killed; use a larger input"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    # The killed run left its piles and its output's temporary (both named after its pid); the next
    # run in the same places removes them and leaves only its output.
    piles, temps = list(work.iterdir()), list(tmp_path.glob(".out.txt.tmp-*"))
    assert [p.name.startswith(f".nano-shuffle-{proc.pid}-") for p in piles] == [True]
    assert [p.name.startswith(f".out.txt.tmp-{proc.pid}-") for p in temps] == [True]
    small = tmp_path / "small.txt"
    small.write_text("".join(f"{i}\n" for i in range(1000)))
    done = subprocess.run([*cmd[:4], str(small), "-o", str(out), "--memory", "2M", "--tmp-dir", str(work)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(work.iterdir()) == [] and list(tmp_path.glob(".out.txt.tmp-*")) == []
    assert sorted(out.read_text().splitlines()) == sorted(small.read_text().splitlines())


def test_bad_input_is_a_clear_error_and_leaves_nothing(tmp_path):
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="not a multiple of the record size 4"):
        shuffle(odd, tmp_path / "o", record_size=4)
    with pytest.raises(OSError, match="missing.txt"):
        shuffle(tmp_path / "missing.txt", tmp_path / "o")
    with pytest.raises(ValueError, match="memory"):
        shuffle(odd, tmp_path / "o", memory="1x")
    assert sorted(os.listdir(tmp_path)) == ["odd.bin"]


def test_cli_prints_summary(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(f'{{"i": {i}}}\n' for i in range(100)))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "nano.data", "shuffle", str(src), "-o", str(out), "--seed", "3"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert '"records": 100' in res.stdout
    assert sorted(out.read_text().splitlines()) == sorted(src.read_text().splitlines())
    res = subprocess.run([*cmd[:-2], "--memory", "12"], capture_output=True, text=True)
    assert res.returncode == 2 and "minimum" in res.stderr


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    """60 MB of lines: with a 2 MB budget and one thread, a two-pass run of about a hundred piles, so each
    phase below lasts long enough to be caught mid-way."""
    big = tmp_path_factory.mktemp("ctrl-c") / "big.txt"
    with open(big, "wb") as f:
        for i in range(40):
            f.write(b"".join(b"%d %d payload payload payload\n" % (i, j) for j in range(50_000)))
    return big


def _piles(work: Path) -> list[Path]:
    try:
        return [p for d in work.iterdir() for p in d.iterdir()]
    except FileNotFoundError:  # the run removed its folder between the two listings
        return []


def _pile_bytes(work: Path) -> int:
    total = 0
    for p in _piles(work):
        try:
            total += p.stat().st_size
        except FileNotFoundError:  # removed between the listing and the stat
            pass
    return total


# When to interrupt, each a condition on the work folder (the run's private pile folder inside it):
# as soon as it exists (pass 1 starting), once the piles hold a third of the input (mid pass 1), and once
# the first pile has been gathered and removed (pass 2 under way, nearly all piles still to go).
MOMENTS = {
    "scatter-start": lambda work, big, seen: bool(list(work.iterdir())),
    "mid-scatter": lambda work, big, seen: _pile_bytes(work) >= big.stat().st_size // 3,
    "gather": lambda work, big, seen: 0 < len(_piles(work)) < max(seen, default=0),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_ctrl_c_stops_and_cleans_up(tmp_path, big_input, moment):
    """SIGINT at any moment of a run: exit 130, no output (not even its temporary name), no piles."""
    out, work = tmp_path / "out" / "shuffled.txt", tmp_path / "work"
    out.parent.mkdir()
    work.mkdir()
    cmd = [sys.executable, "-m", "nano.data", "shuffle", str(big_input), "-o", str(out)]
    # The child gets SIGINT's default disposition, as under a terminal: a runner that started this test
    # in the background (`cmd &` in a script) passes SIGINT on ignored, and Python then never turns it
    # into KeyboardInterrupt, so the run would rightly carry on.
    proc = subprocess.Popen(
        [*cmd, "--memory", "2M", "--threads", "1", "--tmp-dir", str(work)], stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    reached, seen = MOMENTS[moment], []
    try:
        while proc.poll() is None and not reached(work, big_input, seen):
            seen.append(len(_piles(work)))
            time.sleep(0.002)
        # The run must still be going (its output not renamed into place), else the input is too small
        # for this moment to be caught.
        assert proc.poll() is None and not out.exists(), f"the shuffle ended before {moment}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert list(work.iterdir()) == [] and list(out.parent.iterdir()) == []
