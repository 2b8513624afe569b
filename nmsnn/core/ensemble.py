"""An ensemble of K networks as one wider network: each member's layers are a block of each layer.

The members share the input features: the first layer is an ordinary Linear whose output rows
are the members' hidden neurons side by side (``[K*H]``). Every later layer is a
:class:`GroupedLinear`: a block-diagonal weight, so member k's neurons read only member k's
spikes. The neuron recurrence is elementwise, so K members run as one layer of ``K*H`` neurons
through any backend, and the readout gives ``[K*O]`` values per row, member k's in block k.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from nmsnn.errors import ConfigError


def check_members(members: object) -> int:
    """``members`` as the number of ensemble members (an integer >= 1)."""
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ConfigError(
            f"model.ensemble must be an integer >= 1 (the number of members) or auto, got {members!r}."
        )
    return members


class GroupedLinear(nn.Module):
    """``K`` independent ``Linear(in, out)`` blocks on ``[..., K*in]`` -> ``[..., K*out]``.

    The parameters are the blocks ``[K, out, in]`` and the bias ``[K*out]``; :attr:`weight` is
    the block-diagonal ``[K*out, K*in]`` matrix they form (differentiable: gradients reach only
    the blocks, so no member reads another's spikes, in the forward pass or in training).
    """

    def __init__(self, in_features: int, out_features: int, groups: int) -> None:
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ConfigError(f"{in_features} -> {out_features} features do not split into {groups} members.")
        self.groups = groups
        self.in_features, self.out_features = in_features, out_features
        self.blocks = nn.Parameter(torch.empty(groups, out_features // groups, in_features // groups))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each block as PyTorch initializes a ``Linear`` of its own size."""
        bound = 1.0 / math.sqrt(self.blocks.shape[2])
        for block in self.blocks:
            nn.init.kaiming_uniform_(block, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> Tensor:
        return torch.block_diag(*self.blocks.unbind(0))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, groups={self.groups}"


def block_weights(linear: nn.Module) -> list[Tensor]:
    """The weight tensors of ``linear`` that initialization and calibration change in place: the
    blocks of a :class:`GroupedLinear` one by one, an ordinary Linear's whole weight."""
    if isinstance(linear, GroupedLinear):
        return list(linear.blocks.unbind(0))
    return [linear.weight]


def fold_members(prediction: Tensor, fold: Tensor, folds: int, held_out: bool) -> Tensor:
    """An ensemble's outputs ``[B, K, O]`` narrowed, row by row, to the members that hold out
    (``held_out=True``) or train on (``False``) that row's fold ``fold [B]`` (in ``0..folds-1``).

    Member ``k`` holds out the rows of fold ``k % folds``, so every row has ``K / folds`` members
    that never trained on it (its out-of-fold predictions) and ``K - K / folds`` that did. The
    result is ``[B, M, O]`` with the same ``M`` on every row: the selected members' outputs in
    member order.
    """
    table = _fold_table(prediction.shape[1], folds, held_out).to(prediction.device)
    index = table[fold.to(prediction.device, torch.long)]  # [B, M]
    return prediction.gather(1, index.unsqueeze(-1).expand(-1, -1, prediction.shape[-1]))


@functools.lru_cache(maxsize=32)
def _fold_table(members: int, folds: int, held_out: bool) -> Tensor:
    """``[folds, M]``: row f lists the members that hold out (or train on) fold f (made once
    per layout, not at every step)."""
    if members % folds:
        raise ValueError(f"{members} ensemble members do not divide into {folds} folds")
    k = torch.arange(members)
    return torch.stack([k[(k % folds == f) == held_out] for f in range(folds)])
