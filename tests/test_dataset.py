"""BlockLoader against token directories whose content is chosen here (numpy-made), written by the real writer."""

import json
import pickle

import numpy as np
import pytest
import torch
from helpers import filler_tokenizer, write_dataset
from nano.data.loader import BlockLoader


def make_dataset(path, kind="pretrain", train=None, val=(), block_size=None, masks=None, dtype="uint16"):
    """A prepared dataset holding exactly these token arrays (and masks for SFT), in ``dtype``."""
    return write_dataset(path, train, val, kind=kind, masks=masks, block_size=block_size,
                         vocab_size=70000 if dtype == "uint32" else 1000)


@pytest.fixture
def counting(tmp_path):
    """Pretrain data whose token at position i is i, so a block reveals where it starts."""
    return make_dataset(tmp_path / "d", train=np.arange(5000), val=np.arange(300))


def test_random_blocks_are_contiguous_and_shifted(counting):
    loader = BlockLoader(counting, "train", block_size=32, batch_size=8, seed=1)
    for _ in range(5):
        x, y, mask = loader.next_batch()
        assert x.dtype == torch.int64 and y.dtype == torch.int64 and mask.dtype == torch.float32
        assert x.shape == y.shape == mask.shape == (8, 32)
        starts = x[:, :1]
        assert torch.equal(x, starts + torch.arange(32))
        assert torch.equal(y, x + 1)
        assert torch.all(mask == 1)
        assert int(y.max()) < 5000


def test_uint32_tokens(tmp_path):
    d = make_dataset(tmp_path / "d", train=np.arange(70000, 70100), dtype="uint32")
    x, y, _ = BlockLoader(d, "train", 10, 2).next_batch()
    assert int(x.min()) >= 70000 and torch.equal(y, x + 1)


def test_same_seed_same_batches_and_ranks_differ(counting):
    a = [BlockLoader(counting, "train", 16, 4, seed=3).next_batch()[0] for _ in range(2)]
    assert torch.equal(a[0], a[1])
    other_rank = BlockLoader(counting, "train", 16, 4, seed=3, rank=1, world_size=2).next_batch()[0]
    assert not torch.equal(a[0], other_rank)


@pytest.mark.parametrize("mode", ["random", "epoch"])
def test_state_dict_resumes_exactly(counting, mode):
    loader = BlockLoader(counting, "train", 16, 7, seed=5, shuffle=mode)
    for _ in range(30):  # epoch mode: 312 blocks / 7 per batch, so this crosses no epoch yet ...
        loader.next_batch()
    state = pickle.loads(pickle.dumps(loader.state_dict()))
    expected = [loader.next_batch() for _ in range(40)]  # ... and this one does
    resumed = BlockLoader(counting, "train", 16, 7, seed=5, shuffle=mode)
    resumed.load_state_dict(state)
    for want, got in zip(expected, (resumed.next_batch() for _ in range(40)), strict=True):
        for a, b in zip(want, got, strict=True):
            assert torch.equal(a, b)


def test_state_from_another_seed_is_refused(counting):
    state = BlockLoader(counting, "train", 16, 2, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        BlockLoader(counting, "train", 16, 2, seed=2).load_state_dict(state)


def test_epoch_mode_visits_each_block_once_and_ranks_do_not_overlap(tmp_path):
    n_tokens, block = 1001, 10  # 100 non-overlapping blocks (the last needs one extra token for y)
    d = make_dataset(tmp_path / "d", train=np.arange(n_tokens))
    world = 3
    per_rank = 100 // world
    seen = []
    for rank in range(world):
        loader = BlockLoader(d, "train", block, 1, seed=9, rank=rank, world_size=world, shuffle="epoch")
        assert len(loader) == per_rank
        starts = [int(loader.next_batch()[0][0, 0]) for _ in range(per_rank)]
        assert all(s % block == 0 for s in starts)
        assert len(set(starts)) == per_rank
        seen.append(set(starts))
        # The next epoch is a different permutation of the same blocks.
        nxt = [int(loader.next_batch()[0][0, 0]) for _ in range(per_rank)]
        assert nxt != starts
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert len(seen[0] | seen[1] | seen[2]) == per_rank * world


def test_single_rank_epoch_covers_all_blocks(tmp_path):
    d = make_dataset(tmp_path / "d", train=np.arange(641))
    loader = BlockLoader(d, "train", 64, 4, shuffle="epoch", seed=0)
    x = torch.cat([loader.next_batch()[0] for _ in range(3)])[:10]  # 10 blocks in an epoch
    assert sorted(int(s) for s in x[:, 0]) == list(range(0, 640, 64))


def sft_dataset(tmp_path, block_size=8, n=20):
    """n samples of block_size+1 tokens; sample k holds 1000*k + position; mask marks odd positions."""
    length = block_size + 1
    tokens = (np.arange(n)[:, None] * 1000 + np.arange(length)).ravel()
    mask = np.tile(np.arange(length) % 2, n)
    return make_dataset(
        tmp_path / "sft",
        kind="sft",
        train=tokens,
        val=tokens[: 2 * length],
        block_size=block_size,
        masks={"train": mask, "val": mask[: 2 * length]},
        dtype="uint32",
    )


@pytest.mark.parametrize("mode", ["random", "epoch"])
def test_sft_blocks_start_at_samples_and_mask_follows_targets(tmp_path, mode):
    d = sft_dataset(tmp_path)
    loader = BlockLoader(d, "train", 8, 5, shuffle=mode)
    assert loader.meta["kind"] == "sft" and loader.tokenizer_hash == filler_tokenizer(70000).hash
    for _ in range(6):
        x, y, mask = loader.next_batch()
        assert torch.all(x[:, 0] % 1000 == 0)  # a sample's first token
        assert torch.equal(x % 1000, torch.arange(8).expand(5, 8))
        assert torch.equal(y, x + 1)
        # mask is the weight of predicting y: y's position within the sample is odd exactly when marked.
        assert torch.equal(mask, ((y % 1000) % 2).float())


def test_sft_shorter_block_uses_sample_prefix(tmp_path):
    x, _, _ = BlockLoader(sft_dataset(tmp_path), "val", 4, 2).next_batch()
    assert torch.equal(x % 1000, torch.arange(4).expand(2, 4))


def test_bad_arguments_and_data_are_clear_errors(tmp_path, counting):
    with pytest.raises(ValueError, match="no split 'test'"):
        BlockLoader(counting, "test", 8, 1)
    with pytest.raises(ValueError, match="too few"):
        BlockLoader(counting, "val", 300, 1)
    with pytest.raises(ValueError, match="rank"):
        BlockLoader(counting, "train", 8, 1, rank=2, world_size=2)
    with pytest.raises(ValueError, match="shuffle"):
        BlockLoader(counting, "train", 8, 1, shuffle="sorted")
    with pytest.raises(ValueError, match="exceeds"):
        BlockLoader(sft_dataset(tmp_path), "train", 9, 1)
    with pytest.raises(FileNotFoundError, match="meta.json"):
        BlockLoader(tmp_path, "train", 8, 1)
    (counting / "val.tokens").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="bytes"):
        BlockLoader(counting, "val", 4, 1)
    meta = json.loads((counting / "meta.json").read_text())
    (counting / "meta.json").write_text(json.dumps({**meta, "format": "pickle"}))
    with pytest.raises(ValueError, match="format"):
        BlockLoader(counting, "train", 8, 1)
