"""A checkpoint is data, never code: a .pt whose pickle calls os.system is refused by every reader.

The hostile file is a well-formed Nano checkpoint (format, version, model, config, step) with one extra value
whose unpickling runs ``os.system("touch MARKER")``; with ``weights_only=False`` loading it creates MARKER.
"""

import os
import pickle

import pytest
import torch
from nano.checkpoint import load_checkpoint, rng_state, set_rng_state
from nano.model import ModelConfig, Transformer
from test_train import MODEL, train_cfg, write_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile_checkpoint(path, marker):
    model = Transformer(ModelConfig.from_dict(MODEL))
    payload = {"format": "nano-checkpoint", "version": 1, "model": model.state_dict(),
               "model_config": ModelConfig.from_dict(MODEL).to_dict(), "step": 1, "tokenizer_json": None,
               "train_config": {}, "extra": _RunsCode(marker)}
    torch.save(payload, path)
    return path


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / "pwned"
    path = _hostile_checkpoint(tmp_path / "evil.pt", marker)
    # the file really is hostile: an unrestricted load runs its code
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_load_checkpoint_refuses_code(hostile):
    path, marker = hostile
    with pytest.raises(ValueError, match="refused.*never runs code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_export_and_infer_refuse_code(hostile, tmp_path, capsys):
    from nano.export import main as export_main
    from nano.infer import main as infer_main

    path, marker = hostile
    assert export_main([str(tmp_path / "out.bin"), str(path)]) != 0
    assert "refused" in capsys.readouterr().err
    assert infer_main(["-m", str(path), "--prompt", "a"]) != 0
    assert "refused" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.bin").exists()


def test_training_refuses_code_from_checkpoint_and_resume(hostile, tmp_path):
    from nano.train import run

    path, marker = hostile
    data = write_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="refused"):
        run(None, train_cfg(tmp_path / "a", data, from_checkpoint=str(path)), log=False)
    run_dir = tmp_path / "b" / "run"
    run_dir.mkdir(parents=True)
    os.replace(path, run_dir / "last.pt")
    with pytest.raises(ValueError, match="refused"):
        run(MODEL, train_cfg(tmp_path / "b", data, resume=True), log=False)
    assert not marker.exists()


def test_written_checkpoints_are_plain_data_and_resume(tmp_path):
    """What the trainer saves loads under weights_only=True, and its RNG state round-trips exactly."""
    from nano.train import run

    data = write_dataset(tmp_path / "data")
    run(MODEL, train_cfg(tmp_path, data, max_iters=2), log=False)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)  # no allow-list needed
    assert ckpt["step"] == 2
    import random

    import numpy as np

    state = rng_state()
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    set_rng_state(pickle.loads(pickle.dumps(state)))
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


def test_old_checkpoint_with_numpy_rng_array_still_opens(tmp_path):
    """Checkpoints written before the RNG state was stored as ints hold a uint32 ndarray: still readable."""
    import numpy as np

    model = Transformer(ModelConfig.from_dict(MODEL))
    old = {"format": "nano-checkpoint", "version": 1, "model": model.state_dict(),
           "model_config": ModelConfig.from_dict(MODEL).to_dict(), "step": 3,
           "rng": [{"numpy": np.random.get_state()}]}
    torch.save(old, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded["step"] == 3 and np.array_equal(loaded["rng"][0]["numpy"][1], np.random.get_state()[1])


@pytest.mark.parametrize("damage", ["not a dict", "tensor instead of model", "truncated", "garbage"])
def test_foreign_or_damaged_checkpoints_are_refused_with_a_reason(tmp_path, damage):
    path = tmp_path / "x.pt"
    if damage == "not a dict":
        torch.save([1, 2, 3], path)
    elif damage == "tensor instead of model":
        torch.save({"format": "nano-checkpoint", "version": 1, "model": torch.zeros(2), "model_config": {},
                    "step": 0}, path)
    elif damage == "truncated":
        _hostile_checkpoint(path, tmp_path / "m")
        path.write_bytes(path.read_bytes()[:500])
    else:
        path.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(ValueError, match=str(path)):
        load_checkpoint(path)
