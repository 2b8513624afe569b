r"""Input encoders: turn a batch of rows ``x [B, F]`` into an input train ``[T, B, F]``.

* ``uniform_noise`` (the seed's): :math:`x_t = x \odot u_t`, :math:`u_t \sim U[0, 1)` per element.
* ``bernoulli``: rate code, :math:`x_t \sim \text{Bernoulli}(\sigma(x))` (standardized inputs are
  mapped to firing probabilities by the logistic function).
* ``direct``: constant current, :math:`x_t = x`.
* ``receptive_field``: constant current from Gaussian receptive fields (Bohte et al., 2002):
  each standardized feature drives itself and ``fields`` neurons tuned to evenly spaced values
  over ``[-span, span]``, :math:`\exp(-(x - c_g)^2 / 2\sigma^2)`, so the first layer sees where
  in its range a value lies, not only how large it is (``F`` features become
  ``F * (1 + fields)`` inputs).

An encoder's settings are declared once, as the fields of its :attr:`Encoder.Settings` dataclass
(:mod:`nmsnn.core.settings`); ``conf/model/encoder/<kind>.yaml`` is written from them
(:func:`config_text`).

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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from nmsnn.core.backends.noise import counter_noise
from nmsnn.core.settings import AUTO, Range, check_fields, number, setting_notes, settings_of, yaml_value
from nmsnn.errors import ConfigError

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


@dataclass(frozen=True)
class EncoderSettings:
    """An encoder's settings: none here; an encoder with settings subclasses this with fields
    made by :func:`~nmsnn.core.settings.number` or :func:`~nmsnn.core.settings.option`."""

    def __post_init__(self) -> None:
        check_fields(self)


class Encoder(nn.Module):
    """Base class: ``forward(x [B, F], generator=None) -> [T, B, F]``; deterministic when not
    training. All training randomness comes from ``generator`` (torch's global one if ``None``).

    A subclass names itself (``kind``) and declares its settings (``Settings``)."""

    kind: ClassVar[str] = ""
    Settings: ClassVar[type[EncoderSettings]] = EncoderSettings

    def __init__(self, time_steps: int, seed: int = 0, settings: EncoderSettings | None = None) -> None:
        super().__init__()
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ConfigError(f"time_steps must be a positive integer, got {time_steps!r}.")
        self.time_steps = time_steps
        self.seed = seed
        self.settings = self.Settings() if settings is None else settings
        self.register_buffer("frozen", None, persistent=False)

    @property
    def expansion(self) -> int:
        """Inputs per feature in the encoded train (``F`` features -> ``F * expansion`` inputs)."""
        return 1

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

    kind = "uniform_noise"

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.training and x.device.type == "cpu":
            return counter_noise(x, self.time_steps, generator)  # x * u in one pass
        return x.unsqueeze(0) * self.uniform(x, generator)


class BernoulliEncoder(Encoder):
    """Rate code: ``x_t = 1[u_t < sigmoid(x)]``."""

    kind = "bernoulli"

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return (self.uniform(x, generator) < torch.sigmoid(x).unsqueeze(0)).to(x.dtype)


class DirectEncoder(Encoder):
    """Constant current: ``x_t = x`` at every step (deterministic in training too)."""

    kind = "direct"

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)


@dataclass(frozen=True)
class ReceptiveFieldSettings(EncoderSettings):
    """The receptive fields' tuning curves (centres evenly spaced, each as wide as the spacing;
    values further out still reach the network through ``x`` itself)."""

    fields: int = number(8, Range(2, 256), "Gaussian tuning curves per feature", integer=True)
    span: float = number(
        2.0,
        Range(0.0, low_closed=False),
        "their centres spread evenly over [-span, span] standard deviations",
    )


class ReceptiveFieldEncoder(Encoder):
    """Constant current ``[x, exp(-(x - c_1)^2 / 2 s^2), ..., exp(-(x - c_G)^2 / 2 s^2)]`` per
    feature (features side by side, each feature's ``1 + G`` inputs together)."""

    kind = "receptive_field"
    Settings = ReceptiveFieldSettings

    def __init__(
        self, time_steps: int, seed: int = 0, settings: ReceptiveFieldSettings | None = None
    ) -> None:
        super().__init__(time_steps, seed, settings)
        fields, span = self.settings.fields, self.settings.span
        self.register_buffer("centres", torch.linspace(-span, span, fields), persistent=False)
        self.width = 2 * span / (fields - 1)

    @property
    def expansion(self) -> int:
        return 1 + self.settings.fields

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        fields = torch.exp(-0.5 * ((x.unsqueeze(-1) - self.centres.to(x.dtype)) / self.width) ** 2)
        rows = torch.cat([x.unsqueeze(-1), fields], dim=-1).flatten(-2)  # [B, F * (1 + G)]
        return rows.unsqueeze(0).expand(self.time_steps, *rows.shape)


ENCODER_CLASSES: dict[str, type[Encoder]] = {
    cls.kind: cls for cls in (UniformNoiseEncoder, BernoulliEncoder, DirectEncoder, ReceptiveFieldEncoder)
}
ENCODERS = tuple(ENCODER_CLASSES)
# encoder=auto, per task (measured on the tabular suite): receptive fields let a classifier's
# first layer split a feature's range where a class boundary lies; a regressor reads the values
# directly (its numeric columns' piecewise-linear bins, data.bins, do that job there)
BY_TASK = {"classification": "receptive_field", "regression": "direct"}


def encoder_class(kind: Any) -> type[Encoder]:
    """The encoder class called ``kind`` (one of :data:`ENCODERS`)."""
    if kind not in ENCODER_CLASSES:
        raise ConfigError(f"encoder={kind!r} is not an encoder; use one of {ENCODERS}.")
    return ENCODER_CLASSES[kind]


def encoder_settings(kind: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every setting of encoder ``kind``: its defaults, with those ``given`` (an unknown one is
    an error naming the known ones)."""
    cls = encoder_class(kind)
    known = settings_of(cls.Settings)
    unknown = sorted(set(given or {}) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown} for the {kind} encoder; it has "
            f"{sorted(known) or 'none'} (to switch encoders, use model/encoder=<kind>)."
        )
    return {**known, **(given or {})}


def build_encoder(
    kind: str, time_steps: int, seed: int = 0, settings: Mapping[str, Any] | None = None
) -> Encoder:
    """Create the encoder called ``kind`` (one of :data:`ENCODERS`) with ``settings`` (its
    defaults where one is left out)."""
    cls = encoder_class(kind)
    return cls(time_steps, seed, cls.Settings(**encoder_settings(kind, settings)))


def resolve_encoder(
    encoder: str | Mapping[str, Any], params: Mapping[str, Any] | None, task: str
) -> tuple[str, dict[str, Any]]:
    """The encoder a model builds, and all its settings, from ``encoder`` (a kind, or a config
    mapping ``{kind: ..., <setting>: ...}``) and ``params`` (more settings); ``auto`` is the
    task's entry of :data:`BY_TASK`, with its defaults."""
    given = dict(params or {})
    if isinstance(encoder, Mapping):
        given = {**{k: v for k, v in encoder.items() if k != "kind"}, **given}
        encoder = encoder.get("kind", AUTO)
    if encoder == AUTO:
        if given:
            raise ConfigError(
                f"encoder=auto takes no settings (got {sorted(given)}); choose the encoder to set "
                "them, e.g. model/encoder=receptive_field model.encoder.fields=12."
            )
        encoder = BY_TASK[task]
    return encoder, encoder_settings(encoder, given)


def config_text(kind: str) -> str:
    """The Hydra config file of encoder ``kind`` (``conf/model/encoder/<kind>.yaml``), written from
    its settings' declarations (``auto``: the per-task choice)."""
    if kind == AUTO:
        choice = ", ".join(f"{v} for {task}" for task, v in BY_TASK.items())
        return (
            "# encoder=auto: one encoder per task, each with its default settings, written by\n"
            "# nmsnn.core.encoders.config_text (choose one, model/encoder=<kind>, to set its settings).\n"
            f"kind: auto                # {choice}\n"
        )
    cls = encoder_class(kind)
    lines = [
        f"# The {kind} encoder ({cls.__module__}.{cls.__qualname__}), written from its settings by",
        "# nmsnn.core.encoders.config_text.",
        f"kind: {kind}",
    ]
    for name, default, note in setting_notes(cls.Settings):
        lines.append(f"{f'{name}: {yaml_value(default)}':<24} # {note}")
    return "\n".join(lines) + "\n"
