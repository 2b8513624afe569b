"""Encoders: the seed's noise mask, Bernoulli rates, direct current; deterministic evaluation."""

from __future__ import annotations

import pytest
import torch

from nmsnn.core.encoders import build_encoder, frozen_uniform
from nmsnn.errors import ConfigError


def test_uniform_noise_masks_the_input_in_training():
    torch.manual_seed(0)
    enc = build_encoder("uniform_noise", 200).train()
    x = torch.tensor([[2.0, -3.0, 0.0]])
    out = enc(x)
    assert out.shape == (200, 1, 3)
    ratio = out[:, 0, :2] / x[0, :2]
    assert torch.all((ratio >= 0) & (ratio < 1))
    assert torch.all(out[:, 0, 2] == 0)
    assert abs(float(ratio.mean()) - 0.5) < 0.05
    assert not torch.equal(enc(x), enc(x)), "training noise is fresh every call"


@pytest.mark.parametrize("kind", ["uniform_noise", "bernoulli", "direct"])
def test_evaluation_is_deterministic_and_independent_of_the_batch(kind):
    enc = build_encoder(kind, 32).eval()
    x = torch.randn(10, 5)
    first = enc(x)
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(enc(x), first)
    perm = torch.randperm(10)
    assert torch.equal(enc(x[perm]), first[:, perm]), "a row's encoding does not depend on its batch"
    assert torch.equal(enc(x[3:4]), first[:, 3:4])


def test_bernoulli_is_binary_with_the_logistic_rate():
    torch.manual_seed(0)
    enc = build_encoder("bernoulli", 4000).train()
    x = torch.tensor([[-2.0, 0.0, 2.0]])
    out = enc(x)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out.mean(0)[0], torch.sigmoid(x[0]), atol=0.03, rtol=0)


def test_direct_repeats_the_input():
    x = torch.randn(4, 3)
    out = build_encoder("direct", 7)(x)
    assert out.shape == (7, 4, 3) and torch.equal(out[5], x)


def test_frozen_uniform_is_uniform_and_decorrelated():
    u = frozen_uniform(2000, 64)
    assert u.shape == (2000, 1, 64)
    assert float(u.min()) >= 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(u.std()) - (1 / 12) ** 0.5) < 0.01
    over_time = torch.corrcoef(torch.stack([u[:-1].flatten(), u[1:].flatten()]))[0, 1]
    over_features = torch.corrcoef(torch.stack([u[..., :-1].flatten(), u[..., 1:].flatten()]))[0, 1]
    assert abs(float(over_time)) < 0.02 and abs(float(over_features)) < 0.02
    assert not torch.equal(frozen_uniform(5, 3, seed=1), frozen_uniform(5, 3, seed=2))
    assert torch.equal(frozen_uniform(5, 3), frozen_uniform(5, 3))


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_invalid_time_steps(steps):
    with pytest.raises(ConfigError, match="time_steps must be a positive integer"):
        build_encoder("direct", steps)


def test_unknown_encoder():
    with pytest.raises(ConfigError, match="not an encoder"):
        build_encoder("poisson_magic", 4)
