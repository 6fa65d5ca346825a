"""Per-token window selection: which tokens use the long (rescaled) RoPE.

The rule (LongRoPE2 section 5, one rule for training and inference): a token uses the long factors iff
its *document* is longer than the original window. A document is a run of consecutive positions
(``p, p+1, p+2, ...``) in ``position_ids``; positions restart at 0 for each document, so the document
length is the last position of the run plus one. That one rule covers

- plain batches (one run per row),
- left-padded generation batches (pads sit at position 0 and form runs of their own),
- padding-free packed rows (positions restart per document),
- cached decoding (a lone token at position ``p`` belongs to a document of ``p + 1`` tokens).

Under context / sequence parallelism a rank holds only part of each row, so the run that contains a
token may continue on another rank. [`long_window_mask`] then gathers the row's positions over the
group and decides globally; the sharding layout must be given (``contiguous`` or ``load_balanced``, the
head-tail split of torch context parallel: rank ``r`` of ``W`` holds chunks ``r`` and ``2W - 1 - r``).

This module is shipped with saved models; it imports torch only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

LAYOUTS = ("contiguous", "load_balanced")


def document_lengths(position_ids: torch.Tensor) -> torch.Tensor:
    """Length of the document each token belongs to: last position of its run of consecutive positions + 1.

    Args:
        position_ids (`torch.Tensor` of shape `(batch, seq)` or `(seq,)`): Integer positions.

    Returns:
        `torch.LongTensor` of the same shape.
    """
    squeeze = position_ids.dim() == 1
    pos = position_ids[None] if squeeze else position_ids
    pos = pos.long()
    batch, seq = pos.shape
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    run = starts.long().cumsum(-1) - 1 + torch.arange(batch, device=pos.device)[:, None] * seq
    run_end = torch.full((batch * seq,), -1, dtype=torch.long, device=pos.device)
    run_end = run_end.scatter_reduce(0, run.reshape(-1), pos.reshape(-1), reduce="amax")
    lengths = run_end[run] + 1
    return lengths[0] if squeeze else lengths


@dataclass(frozen=True)
class SequenceShard:
    """How rows are split across a context / sequence parallel group (see the module docstring).

    Args:
        rank (`int`): This process's index in the group.
        world_size (`int`): Size of the group.
        layout (`str`): ``"contiguous"`` (rank r holds the r-th of W equal slices) or ``"load_balanced"``
            (2W chunks, rank r holds chunks r and 2W - 1 - r).
        group (`Any`): The ``torch.distributed`` process group to gather over (None: the default group).
        all_gather (`Callable`, *optional*): Replaces the collective (tests simulate shards with it):
            takes the local tensor, returns the list of every rank's tensor in rank order.
    """

    rank: int
    world_size: int
    layout: str = "contiguous"
    group: Any = None
    all_gather: Callable[[torch.Tensor], list[torch.Tensor]] | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"SequenceShard.layout must be one of {LAYOUTS}, got {self.layout!r}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"SequenceShard.rank must be in [0, {self.world_size}), got {self.rank}")

    def gather(self, local: torch.Tensor) -> list[torch.Tensor]:
        if self.all_gather is not None:
            return self.all_gather(local)
        import torch.distributed as dist  # only under sequence parallelism, with a process group

        out = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(out, local.contiguous(), group=self.group)
        return out


def _chunk_order(world_size: int, layout: str) -> list[list[int]]:
    """Global chunk indices held by each rank, in the order they are concatenated locally."""
    if layout == "contiguous":
        return [[r] for r in range(world_size)]
    return [[r, 2 * world_size - 1 - r] for r in range(world_size)]


def shard(full: torch.Tensor, rank: int, world_size: int, layout: str = "contiguous") -> torch.Tensor:
    """This rank's part of `full` along the last dimension under `layout` (inverse of [`unshard`])."""
    order = _chunk_order(world_size, layout)
    chunks = full.chunk(sum(len(o) for o in order), dim=-1)
    return torch.cat([chunks[i] for i in order[rank]], dim=-1)


def unshard(parts: list[torch.Tensor], layout: str = "contiguous") -> torch.Tensor:
    """Rebuild full rows from every rank's local part (each of equal length) under `layout`."""
    order = _chunk_order(len(parts), layout)
    pieces: dict[int, torch.Tensor] = {}
    for rank, part in enumerate(parts):
        for chunk, piece in zip(order[rank], part.chunk(len(order[rank]), dim=-1), strict=True):
            pieces[chunk] = piece
    return torch.cat([pieces[i] for i in sorted(pieces)], dim=-1)


def long_window_mask(
    position_ids: torch.Tensor, original_max_position_embeddings: int, shard_spec: SequenceShard | None = None
) -> torch.Tensor:
    """Boolean mask, True where a token's document is longer than the original window.

    With `shard_spec`, positions are gathered over the group, the decision is made on the full rows and
    this rank's part of the mask is returned, so every rank agrees on every document.
    """
    if shard_spec is None or shard_spec.world_size == 1:
        return document_lengths(position_ids) > original_max_position_embeddings
    full = unshard(shard_spec.gather(position_ids), shard_spec.layout)
    mask = document_lengths(full) > original_max_position_embeddings
    return shard(mask, shard_spec.rank, shard_spec.world_size, shard_spec.layout)
