"""python/nano/_native.pyi describes the built extension: ``mypy.stubtest`` finds no difference."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

REPO = Path(__file__).resolve().parent.parent


def test_native_stubs_match_the_extension():
    pytest.importorskip("mypy", reason="mypy (the test extra) runs stubtest")
    result = subprocess.run([sys.executable, "-m", "mypy.stubtest", "nano._native"],
                            capture_output=True, text=True, env=subprocess_env(), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
