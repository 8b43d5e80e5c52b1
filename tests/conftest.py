"""Shared fixtures: where the shared corpora live, and a per-test scratch directory."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("NANO_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared corpora and reference vocabulary (../shared/data beside the checkout)."""
    if not (SHARED_DATA / "tokenizer_16384.json").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set NANO_SHARED_DATA)")
    return SHARED_DATA


def subprocess_env(**extra: str) -> dict:
    """Environment for a child `python -m nano.…`: it must import the same `nano` this test process
    imported (the installed wheel in CI, the source tree in an editable install), never the bare
    source folder, which has no compiled `_native` when the package was installed as a wheel."""
    import nano

    package_root = str(Path(nano.__file__).resolve().parent.parent)
    return dict(os.environ, PYTHONPATH=package_root, **extra)


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from more threads; restore the setting for other modules' tests."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
