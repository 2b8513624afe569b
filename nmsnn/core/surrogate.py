r"""Spike functions.

* ``relu``: graded spikes, :math:`\max(0, v)` with its ordinary gradient (the seed's choice).
* ``heaviside``: binary spikes :math:`1[v > 0]`; the backward pass uses the fast-sigmoid surrogate
  :math:`\partial s / \partial v = 1 / (1 + k|v|)^2` with slope :math:`k`.
"""

from __future__ import annotations

import torch
from torch import Tensor

SPIKE_FUNCTIONS = ("relu", "heaviside")


class HeavisideFastSigmoid(torch.autograd.Function):
    """Heaviside step forward, fast-sigmoid derivative backward."""

    @staticmethod
    def forward(ctx, v: Tensor, slope: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.slope = slope
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad * surrogate_grad(v, ctx.slope), None


def surrogate_grad(v: Tensor, slope: float) -> Tensor:
    """Fast-sigmoid surrogate derivative ``1 / (1 + slope * |v|)^2``."""
    return (1.0 + slope * v.abs()).reciprocal().square()


def spike(v: Tensor, spike_fn: str, slope: float) -> Tensor:
    """Apply spike function ``spike_fn`` to the distance above threshold ``v``."""
    if spike_fn == "relu":
        return torch.relu(v)
    if not (torch.is_grad_enabled() and v.requires_grad):  # no gradient to shape (and traceable)
        return (v > 0).to(v.dtype)
    return HeavisideFastSigmoid.apply(v, slope)
