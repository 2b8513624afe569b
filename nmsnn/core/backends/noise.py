r"""Counter-based training noise for CPU encoders: ``x_t = x \odot u_t`` in one pass.

``torch.rand`` on CPU runs a Mersenne-Twister-style generator serially and the encoder then
multiplies in a second pass; for the seed's setting (T=500, 64 rows, 30 features) that was a
tenth of a training step. Here every element is a hash of its position and a 64-bit key:

.. math::

    i = (t\,B + b)\,F + f, \qquad
    h = \text{fmix32}\big(\text{fmix32}(i_{lo}\,\phi + k_0) \oplus k_1 + i_{hi}\,\psi\big), \qquad
    u = \lfloor h / 2^8 \rfloor \, 2^{-24} \in [0, 1)

(``fmix32`` is MurmurHash3's finalizer, :math:`\phi, \psi` odd constants, all arithmetic mod
:math:`2^{32}`). The key :math:`(k_0, k_1)` is two draws of ``torch.randint`` from the caller's
``torch.Generator`` (torch's global one when ``None``), one pair per call: all randomness still comes
from that generator, so a model seeded with ``torch.manual_seed(s)`` sees a reproducible stream and
two generators in the same state give identical noise. :func:`counter_noise_torch` computes the
same numbers with torch ops (the fallback without numba, and the check in the tests);
:func:`counter_noise` uses a numba kernel when numba is installed.
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
PHI = 0x9E3779B1  # odd constants mixing the counter's low and high words
PSI = 0x85EBCA77
M1, M2 = 0x85EBCA6B, 0xC2B2AE35  # MurmurHash3 fmix32
SCALE = 1.0 / (1 << 24)


def draw_key(generator: torch.Generator | None = None) -> tuple[int, int]:
    """Two 32-bit keys drawn from ``generator`` (torch's global CPU generator when ``None``)."""
    k0, k1 = torch.randint(0, 1 << 32, (2,), dtype=torch.int64, generator=generator).tolist()
    return k0, k1


def _fmix32(h: Tensor) -> Tensor:
    h = h ^ (h >> 16)
    h = (h * M1) & MASK32
    h = h ^ (h >> 13)
    h = (h * M2) & MASK32
    return h ^ (h >> 16)


def counter_noise_torch(x: Tensor, steps: int, key: tuple[int, int]) -> Tensor:
    """``x * u`` shaped ``[steps, *x.shape]`` with the counter-based ``u`` (plain torch ops)."""
    n = x.numel()
    i = torch.arange(steps * n, device=x.device, dtype=torch.int64)
    lo, hi = i & MASK32, i >> 32
    h = _fmix32((lo * PHI + key[0]) & MASK32)
    h = _fmix32(((h ^ key[1]) + hi * PSI) & MASK32)
    u = (h >> 8).to(torch.float64) * SCALE
    compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    # u has 24 bits, so the product below rounds once, as the numba kernel's does
    out = x.to(compute).reshape(1, n) * u.view(steps, n).to(compute)
    return out.to(x.dtype).view(steps, *x.shape)


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


_NUMBA = None


def counter_noise(x: Tensor, steps: int, generator: torch.Generator | None = None) -> Tensor:
    """Training noise ``x * u`` ``[steps, *x.shape]`` for a CPU tensor ``x``; the key comes from
    ``generator``. Uses the numba kernel when numba is installed (same numbers either way)."""
    global _NUMBA
    key = draw_key(generator)
    if _NUMBA is None:
        _NUMBA = _numba_available()
    differentiable = x.requires_grad and torch.is_grad_enabled()
    if (
        not _NUMBA
        or differentiable
        or x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
    ):
        return counter_noise_torch(x, steps, key)
    from nmsnn.core.backends.numba_cpu import noise_kernel, run_split

    flat = x.detach().reshape(-1).contiguous()
    out = torch.empty(steps, flat.numel(), dtype=x.dtype)
    run_split(noise_kernel, (flat.numpy(), out.numpy(), key[0], key[1]), steps, flat.numel())
    return out.view(steps, *x.shape)
