"""Checkpoints written atomically: a full disk or a kill never leaves a partial file under the
final name (Lightning's own writer moves a file from the temporary directory, which across file
systems is a copy that can stop halfway, and a later resume then fails on the broken file)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

from nmsnn.files import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the checkpoint, then one rename onto its name;
    out of disk space: one error naming the file and the space (see :func:`write_atomic`)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options!r}.")
        write_atomic(path, lambda tmp: torch.save(checkpoint, tmp), overwrite=True)
