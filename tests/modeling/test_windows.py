"""Document lengths from position ids, and the global decision on sequence-parallel shards."""

from __future__ import annotations

import pytest
import torch

from hf_longrope2.modeling.windows import SequenceShard, document_lengths, long_window_mask, shard, unshard


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


def _gloo_worker(rank: int, world: int, init_file: str, layout: str, full: torch.Tensor, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        local = shard(full, rank, world, layout)
        mask = long_window_mask(local, 32, SequenceShard(rank, world, layout))  # real all_gather
        queue.put((rank, mask))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("layout", ["contiguous", "load_balanced"])
def test_global_decision_over_real_gloo_group(tmp_path, layout):
    import torch.multiprocessing as mp

    full = _packed_rows([[100, 20, 8], [40, 88]])
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_gloo_worker, args=(r, 2, str(tmp_path / "init"), layout, full, queue)) for r in range(2)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    want = long_window_mask(full, 32)
    for rank in range(2):
        assert torch.equal(results[rank], shard(want, rank, 2, layout))
