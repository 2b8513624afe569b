r"""Input encoders: turn a batch of rows ``x [B, F]`` into an input train ``[T, B, F]``.

* ``uniform_noise`` (the seed's): :math:`x_t = x \odot u_t`, :math:`u_t \sim U[0, 1)` per element.
* ``bernoulli``: rate code, :math:`x_t \sim \text{Bernoulli}(\sigma(x))` (standardized inputs are
  mapped to firing probabilities by the logistic function).
* ``direct``: constant current, :math:`x_t = x`.

Training draws fresh randomness from torch's generator. Evaluation is deterministic: the random
numbers come from a counter-based hash of the row's values, the feature index and the time step,
so the same row is encoded the same way whatever batch it sits in and however often it is seen.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmsnn.errors import ConfigError

ENCODERS = ("uniform_noise", "bernoulli", "direct")

_MASK32 = 0xFFFFFFFF


def _fmix32(h: Tensor) -> Tensor:
    """MurmurHash3's 32-bit finalizer on int64 tensors holding 32-bit values."""
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def hashed_uniform(x: Tensor, time_steps: int, seed: int = 0) -> Tensor:
    """Deterministic uniform numbers in [0, 1), shaped ``[T, B, F]``, keyed on the values of ``x``.

    Element ``(t, b, f)`` depends only on ``x[b, f]``, ``f``, ``t`` and ``seed``.
    """
    bits = (x.float() + 0.0).contiguous().view(torch.int32).to(torch.int64) & _MASK32
    feature = torch.arange(x.shape[-1], device=x.device, dtype=torch.int64)
    step = torch.arange(time_steps, device=x.device, dtype=torch.int64).view(-1, 1, 1)
    key = _fmix32((bits * 0x9E3779B1 + feature * 0x85EBCA77 + seed) & _MASK32)
    h = _fmix32((key.unsqueeze(0) + step * 0xC2B2AE3D) & _MASK32)
    return (h >> 8).to(x.dtype if x.is_floating_point() else torch.float32) * (1.0 / (1 << 24))


class Encoder(nn.Module):
    """Base class: ``forward(x [B, F]) -> [T, B, F]``; deterministic when not training."""

    def __init__(self, time_steps: int, seed: int = 0) -> None:
        super().__init__()
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ConfigError(f"time_steps must be a positive integer, got {time_steps!r}.")
        self.time_steps = time_steps
        self.seed = seed

    def uniform(self, x: Tensor) -> Tensor:
        """Fresh ``U[0, 1)`` noise when training, row-keyed hashed noise when evaluating."""
        if self.training:
            return torch.rand((self.time_steps, *x.shape), device=x.device, dtype=x.dtype)
        return hashed_uniform(x, self.time_steps, self.seed)

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}"


class UniformNoiseEncoder(Encoder):
    """The seed's flicker: ``x_t = x * u_t`` with ``u_t ~ U[0, 1)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(0) * self.uniform(x)


class BernoulliEncoder(Encoder):
    """Rate code: ``x_t = 1[u_t < sigmoid(x)]``."""

    def forward(self, x: Tensor) -> Tensor:
        return (self.uniform(x) < torch.sigmoid(x).unsqueeze(0)).to(x.dtype)


class DirectEncoder(Encoder):
    """Constant current: ``x_t = x`` at every step (deterministic in training too)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)


def build_encoder(kind: str, time_steps: int, seed: int = 0) -> Encoder:
    """Create the encoder called ``kind`` (one of :data:`ENCODERS`)."""
    classes = {
        "uniform_noise": UniformNoiseEncoder,
        "bernoulli": BernoulliEncoder,
        "direct": DirectEncoder,
    }
    if kind not in classes:
        raise ConfigError(f"encoder={kind!r} is not an encoder; use one of {ENCODERS}.")
    return classes[kind](time_steps, seed)
