r"""Input encoders: turn a batch of rows ``x [B, F]`` into an input train ``[T, B, F]``.

* ``uniform_noise`` (the seed's): :math:`x_t = x \odot u_t`, :math:`u_t \sim U[0, 1)` per element.
* ``bernoulli``: rate code, :math:`x_t \sim \text{Bernoulli}(\sigma(x))` (standardized inputs are
  mapped to firing probabilities by the logistic function).
* ``direct``: constant current, :math:`x_t = x`.
* ``receptive_field``: constant current from Gaussian receptive fields (Bohte et al., 2002):
  each standardized feature drives itself and :data:`FIELDS` neurons tuned to evenly spaced
  values, :math:`\exp(-(x - c_g)^2 / 2\sigma^2)`, so the first layer sees where in its range a
  value lies, not only how large it is (``F`` features become ``F * (1 + FIELDS)`` inputs).

Training draws fresh randomness from torch's generator (the global one, or the ``generator``
passed to ``forward``: a population of models gives each member its own). On CPU the noise is
counter-based (:mod:`nmsnn.core.backends.noise`: a hash of each element's position and a key of
two ``torch.randint`` draws from that generator per call, fused with the product ``x * u``); on
other devices it is ``torch.rand`` on that generator. Evaluation is deterministic: it uses one
frozen table of random numbers ``u[t, f]`` (a counter-based hash of the time step, the feature
index and a seed), shared by all rows, so a row is encoded the same way whatever batch it sits
in and however often it is seen, on any device, and the table is a constant in an export.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmsnn.core.backends.noise import counter_noise
from nmsnn.errors import ConfigError

ENCODERS = ("uniform_noise", "bernoulli", "direct", "receptive_field")
# the receptive fields: centres evenly spaced over [-FIELD_SPAN, FIELD_SPAN] standard deviations,
# each as wide as the spacing (values further out still reach the network through x itself)
FIELDS = 8
FIELD_SPAN = 2.0

_MASK32 = 0xFFFFFFFF


def _fmix32(h: Tensor) -> Tensor:
    """MurmurHash3's 32-bit finalizer on int64 tensors holding 32-bit values."""
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & _MASK32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def frozen_uniform(
    time_steps: int,
    features: int,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The evaluation noise table: uniform numbers in [0, 1), shaped ``[T, 1, F]``.

    Element ``(t, f)`` is a hash of ``t``, ``f`` and ``seed`` only: no generator state.
    """
    feature = torch.arange(features, device=device, dtype=torch.int64)
    step = torch.arange(time_steps, device=device, dtype=torch.int64).view(-1, 1)
    key = _fmix32((feature * 0x9E3779B1 + seed * 0x85EBCA77 + 0x27D4EB2F) & _MASK32)
    h = _fmix32((key.unsqueeze(0) + step * 0xC2B2AE3D) & _MASK32)
    return ((h >> 8).to(dtype) * (1.0 / (1 << 24))).unsqueeze(1)


class Encoder(nn.Module):
    """Base class: ``forward(x [B, F], generator=None) -> [T, B, F]``; deterministic when not
    training. All training randomness comes from ``generator`` (torch's global one if ``None``)."""

    # inputs per feature in the encoded train (``F`` features -> ``F * expansion`` inputs)
    expansion = 1

    def __init__(self, time_steps: int, seed: int = 0) -> None:
        super().__init__()
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ConfigError(f"time_steps must be a positive integer, got {time_steps!r}.")
        self.time_steps = time_steps
        self.seed = seed
        self.register_buffer("frozen", None, persistent=False)

    def freeze(self, features: int) -> None:
        """Store the evaluation noise table for ``features`` inputs as a buffer (moves with the
        module, and is a constant when the module is traced or exported)."""
        self.frozen = frozen_uniform(self.time_steps, features, self.seed)

    def uniform(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Fresh ``U[0, 1)`` noise ``[T, B, F]`` from ``generator`` (torch's global one when
        ``None``) when training; the frozen table ``[T, 1, F]`` (broadcast over rows) when
        evaluating."""
        if self.training:
            if x.device.type == "cpu":
                return counter_noise(torch.ones_like(x), self.time_steps, generator)
            return torch.rand(
                (self.time_steps, *x.shape), device=x.device, dtype=x.dtype, generator=generator
            )
        if self.frozen is not None and self.frozen.shape[-1] == x.shape[-1]:
            return self.frozen.to(x.dtype)
        return frozen_uniform(self.time_steps, x.shape[-1], self.seed, x.device, x.dtype)

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}"


class UniformNoiseEncoder(Encoder):
    """The seed's flicker: ``x_t = x * u_t`` with ``u_t ~ U[0, 1)``."""

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.training and x.device.type == "cpu":
            return counter_noise(x, self.time_steps, generator)  # x * u in one pass
        return x.unsqueeze(0) * self.uniform(x, generator)


class BernoulliEncoder(Encoder):
    """Rate code: ``x_t = 1[u_t < sigmoid(x)]``."""

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return (self.uniform(x, generator) < torch.sigmoid(x).unsqueeze(0)).to(x.dtype)


class DirectEncoder(Encoder):
    """Constant current: ``x_t = x`` at every step (deterministic in training too)."""

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)


class ReceptiveFieldEncoder(Encoder):
    """Constant current ``[x, exp(-(x - c_1)^2 / 2 s^2), ..., exp(-(x - c_G)^2 / 2 s^2)]`` per
    feature (features side by side, each feature's ``1 + G`` inputs together)."""

    expansion = 1 + FIELDS

    def __init__(self, time_steps: int, seed: int = 0) -> None:
        super().__init__(time_steps, seed)
        self.register_buffer("centres", torch.linspace(-FIELD_SPAN, FIELD_SPAN, FIELDS), persistent=False)
        self.width = 2 * FIELD_SPAN / (FIELDS - 1)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        fields = torch.exp(-0.5 * ((x.unsqueeze(-1) - self.centres.to(x.dtype)) / self.width) ** 2)
        rows = torch.cat([x.unsqueeze(-1), fields], dim=-1).flatten(-2)  # [B, F * (1 + G)]
        return rows.unsqueeze(0).expand(self.time_steps, *rows.shape)


def build_encoder(kind: str, time_steps: int, seed: int = 0) -> Encoder:
    """Create the encoder called ``kind`` (one of :data:`ENCODERS`)."""
    classes = {
        "uniform_noise": UniformNoiseEncoder,
        "bernoulli": BernoulliEncoder,
        "direct": DirectEncoder,
        "receptive_field": ReceptiveFieldEncoder,
    }
    if kind not in classes:
        raise ConfigError(f"encoder={kind!r} is not an encoder; use one of {ENCODERS}.")
    return classes[kind](time_steps, seed)
