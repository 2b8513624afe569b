"""Batches of tabular rows by index slicing of whole tensors (no per-row collate)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


class TensorRows(Dataset):
    """Whole-dataset tensors; ``rows[indices]`` returns ``{"x": x[indices], "y": y[indices]}``."""

    def __init__(self, x: Tensor, y: Tensor | None = None) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, indices: list[int] | Tensor) -> dict[str, Tensor]:
        indices = torch.as_tensor(indices, dtype=torch.long)
        batch = {"x": self.x[indices]}
        if self.y is not None:
            batch["y"] = self.y[indices]
        return batch


class IndexBatchSampler(Sampler[list[int]]):
    """Yields lists of row indices, one list per batch.

    Shuffling draws a permutation from ``seed + epoch`` (call :meth:`set_epoch`; Lightning does),
    so an epoch's batches depend only on the seed and the epoch number.
    """

    def __init__(self, num_rows: int, batch_size: int, shuffle: bool = False, seed: int = 0) -> None:
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_rows, generator=generator)
        else:
            order = torch.arange(self.num_rows)
        yield from (chunk.tolist() for chunk in order.split(self.batch_size))

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)
