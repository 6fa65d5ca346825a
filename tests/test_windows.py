"""Document lengths from position ids, and the global decision on sequence-parallel shards."""

from __future__ import annotations

import pytest
import torch

from hf_longrope2.windows import SequenceShard, document_lengths, long_window_mask, shard, unshard


def test_document_lengths_cases():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 0, 0, 0, 1, 2, 3, 4, 5]])
    assert document_lengths(pos).tolist() == [[3, 3, 3, 2, 2, 4, 4, 4, 4], [1, 1, 1, 6, 6, 6, 6, 6, 6]]
    assert document_lengths(torch.tensor([[41]])).tolist() == [[42]]  # a decoding token
    assert document_lengths(torch.tensor([5, 6, 0])).tolist() == [7, 7, 1]


def _packed_rows(lengths_per_row):
    rows = [torch.cat([torch.arange(n) for n in lengths]) for lengths in lengths_per_row]
    return torch.stack(rows)


@pytest.mark.parametrize("layout", ["contiguous", "load_balanced"])
@pytest.mark.parametrize("world", [2, 4])
def test_sharded_decision_equals_unsharded(layout, world):
    full = _packed_rows([[100, 20, 8], [24, 104], [128], [40, 88]])  # 128 tokens each, window 32
    want = long_window_mask(full, 32)
    parts = [shard(full, r, world, layout) for r in range(world)]
    assert torch.equal(unshard(parts, layout), full)
    for rank in range(world):
        spec = SequenceShard(rank, world, layout, all_gather=lambda local: parts)
        assert torch.equal(long_window_mask(parts[rank], 32, spec), shard(want, rank, world, layout))
    # A local decision would be wrong: the rank holding the start of the 100-token document sees no end of it.
    assert any(not torch.equal(long_window_mask(parts[r], 32), shard(want, r, world, layout)) for r in range(world))


def test_shard_spec_validates():
    with pytest.raises(ValueError, match="layout must be one of"):
        SequenceShard(0, 2, "zigzag")
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        SequenceShard(2, 2)
