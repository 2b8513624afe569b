"""Batches of tabular rows by index slicing of whole tensors (no per-row collate)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


class TensorRows(Dataset):
    """Whole-split tensors; ``rows[indices]`` returns ``{"x": x[indices], "y": y[indices], "row": indices}``
    and, for rows dealt into validation folds, ``"fold": fold[indices]``."""

    def __init__(self, x: Tensor, y: Tensor | None = None, fold: Tensor | None = None) -> None:
        self.x, self.y, self.fold = x, y, fold

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, indices: list[int] | Tensor) -> dict[str, Tensor]:
        indices = torch.as_tensor(indices, dtype=torch.long)
        batch = {"x": self.x[indices], "row": indices}
        if self.y is not None:
            batch["y"] = self.y[indices]
        if self.fold is not None:
            batch["fold"] = self.fold[indices]
        return batch


class IndexBatchSampler(Sampler[list[int]]):
    """Yields lists of row indices, one list per batch, for one rank of ``world_size``.

    Shuffling draws a permutation from ``seed + epoch`` (call :meth:`set_epoch`; Lightning does),
    so an epoch's batches depend only on the seed and the epoch number. Under DDP the permutation
    is dealt out to the ranks (``order[rank::world_size]``): every row is seen exactly once per
    epoch across ranks, and every rank gets the same number of batches (a rank with one row more
    puts it into its last batch), so no rank waits for another.
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_rows < world_size:
            raise ValueError(f"{num_rows} rows cannot be shared by {world_size} processes")
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-(self.num_rows // self.world_size) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_rows, generator=generator)
        else:
            order = torch.arange(self.num_rows)
        chunks = list(order[self.rank :: self.world_size].split(self.batch_size))
        n = len(self)
        if len(chunks) > n:  # this rank has one row more than the smallest shard
            chunks[n - 1 :] = [torch.cat(chunks[n - 1 :])]
        yield from (chunk.tolist() for chunk in chunks)


AUTO_BATCH_ROWS = 32  # about this many batches per epoch ...
AUTO_BATCH_LIMITS = (32, 512)  # ... within these batch sizes


def auto_batch_size(train_rows: int) -> int:
    """``data.batch_size=auto``: the power of two nearest ``train_rows / 32``, within [32, 512].

    A few hundred rows train in batches of 32 (small batches regularize small tables), tens of
    thousands in batches of 512 (so an epoch is a few dozen steps, not hundreds)."""
    low, high = AUTO_BATCH_LIMITS
    target = max(1.0, train_rows / AUTO_BATCH_ROWS)
    return int(min(high, max(low, 2 ** round(math.log2(target)))))
