"""Encoders: the seed's noise mask, Bernoulli rates, direct current; deterministic evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmsnn.core.backends import installed
from nmsnn.core.encoders import ENCODERS, build_encoder, config_text, frozen_uniform
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


# ------------------------------------------------------------- counter-based training noise


def test_counter_noise_numba_kernel_matches_the_torch_formula():
    from nmsnn.core.backends.noise import counter_noise, counter_noise_torch, draw_key

    for dtype in (torch.float32, torch.float64):
        x = torch.randn(7, 13, dtype=dtype)
        fast = counter_noise(x, 37, torch.Generator().manual_seed(5))
        slow = counter_noise_torch(x, 37, draw_key(torch.Generator().manual_seed(5)))
        assert fast.dtype == dtype and fast.shape == (37, 7, 13)
        assert torch.equal(fast, slow)


@pytest.mark.skipif(not installed("numba"), reason="numba is not installed")
@pytest.mark.parametrize("base", [0, 2**32 - 7, 3 * 2**32 + 5])
def test_counter_noise_row_matches_the_formula_at_any_counter(base):
    """The kernel's 32-bit row loop (one high word per row) and its general loop (a row that
    crosses 2**32) give the torch formula's numbers."""
    from nmsnn.core.backends import noise
    from nmsnn.core.backends.numba_cpu import noise_at

    k0, k1 = 0x12345678, 0xFEDCBA98
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(29, dtype=dtype)
        i = torch.arange(base, base + 29, dtype=torch.int64)
        h = noise._fmix32(((i & noise.MASK32) * noise.PHI + k0) & noise.MASK32)
        h = noise._fmix32(((h ^ k1) + (i >> 32) * noise.PSI) & noise.MASK32)
        want = (x.double() * ((h >> 8).double() * noise.SCALE)).to(dtype)
        assert torch.equal(torch.from_numpy(noise_at(x.numpy(), base, k0, k1)), want)


def test_counter_noise_is_uniform_and_independent():
    from nmsnn.core.backends.noise import counter_noise

    torch.manual_seed(0)
    u = counter_noise(torch.ones(64, 30), 500).double()  # [T, B, F]
    assert float(u.min()) >= 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.002
    assert abs(float(u.var()) - 1 / 12) < 0.001
    counts = torch.histc(u, bins=20, min=0, max=1)
    expected = u.numel() / 20
    assert float(((counts - expected) ** 2 / expected).sum()) < 60  # chi-square, 19 dof
    for dim in range(3):  # neighbours over time, rows and features
        a, b = u.narrow(dim, 0, u.shape[dim] - 1), u.narrow(dim, 1, u.shape[dim] - 1)
        assert abs(float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])) < 0.01
    again = counter_noise(torch.ones(64, 30), 500).double()  # the next call's draw
    assert abs(float(torch.corrcoef(torch.stack([u.flatten(), again.flatten()]))[0, 1])) < 0.01


def test_training_noise_comes_from_the_generator():
    enc = build_encoder("uniform_noise", 50).train()
    x = torch.randn(8, 4)
    torch.manual_seed(7)
    first = enc(x)
    torch.manual_seed(7)
    assert torch.equal(enc(x), first), "torch.manual_seed makes the stream reproducible"
    assert not torch.equal(enc(x), first), "and fresh on the next call"
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    torch.manual_seed(0)
    a = enc(x, g1)
    torch.manual_seed(1)  # the global generator plays no part when one is given
    assert torch.equal(enc(x, g2), a)
    assert torch.equal(g1.get_state(), g2.get_state())
    assert not torch.equal(enc(x, g1), a)
    ratio = a / x
    assert torch.all((ratio >= 0) & (ratio < 1))


def test_bernoulli_training_draws_from_the_generator():
    enc = build_encoder("bernoulli", 64).train()
    x = torch.randn(5, 3)
    a = enc(x, torch.Generator().manual_seed(2))
    assert torch.equal(enc(x, torch.Generator().manual_seed(2)), a)
    assert not torch.equal(enc(x, torch.Generator().manual_seed(3)), a)


def test_frozen_table_is_unchanged():
    # pinned values: evaluation noise must not change between versions
    u = frozen_uniform(3, 2, seed=0).flatten().tolist()
    assert u == PINNED_FROZEN


PINNED_FROZEN = [0.6292828321456909, 0.28129637241363525, 0.0354609489440918, 0.9252578020095825]
PINNED_FROZEN += [0.39222508668899536, 0.2140461802482605]


def test_receptive_fields_give_each_feature_its_value_and_tuning_curves():
    from nmsnn.core.encoders import ReceptiveFieldSettings

    FIELDS, FIELD_SPAN = ReceptiveFieldSettings().fields, ReceptiveFieldSettings().span
    enc = build_encoder("receptive_field", 5).train()
    x = torch.tensor([[0.0, FIELD_SPAN], [-FIELD_SPAN, 10.0]])
    out = enc(x)
    assert out.shape == (5, 2, 2 * (1 + FIELDS)) and enc.expansion == 1 + FIELDS
    assert torch.equal(out[0], out[4])  # a constant current, deterministic in training too
    per_feature = out[0].view(2, 2, 1 + FIELDS)
    assert torch.equal(per_feature[..., 0], x)  # the value itself comes first
    fields = per_feature[..., 1:]
    assert fields[0, 1, -1] == 1 and fields[1, 0, 0] == 1  # a value at a centre fires that field fully
    assert torch.all(fields[1, 1] < 1e-10)  # far outside the span: only the value itself
    assert torch.all((fields >= 0) & (fields <= 1))


def test_the_auto_encoder_is_chosen_per_task_and_saved_as_chosen():
    from nmsnn.core.encoders import BY_TASK as AUTO_ENCODER
    from nmsnn.lit.module import SpikingModule

    for task, outputs in (("classification", 3), ("regression", 1)):
        module = SpikingModule(task, 4, outputs, hidden=[8], encoder="auto")
        chosen = AUTO_ENCODER[task]
        assert module.hparams.encoder == chosen  # a checkpoint records what was built
        assert module.model.network.layers[0].linear.in_features == 4 * build_encoder(chosen, 2).expansion
    assert AUTO_ENCODER == {"classification": "receptive_field", "regression": "direct"}


ENCODER_CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "encoder"


@pytest.mark.parametrize("kind", [*ENCODERS, "auto"])
def test_each_encoders_config_file_is_written_from_its_settings(kind):
    """conf/model/encoder/<kind>.yaml holds every setting with its declared default."""
    assert (ENCODER_CONF / f"{kind}.yaml").read_text() == config_text(kind)


def test_encoder_settings_are_checked_recorded_and_rebuilt(tmp_path):
    """model/encoder=receptive_field model.encoder.fields=4: the module builds 1 + 4 inputs per
    feature, the checkpoint records every setting, and bad or unknown settings are named."""
    from nmsnn.lit.module import SpikingModule

    module = SpikingModule(
        "classification", 3, 2, hidden=[8], encoder={"kind": "receptive_field", "fields": 4}
    )
    assert module.hparams.encoder == "receptive_field"
    assert module.hparams.encoder_params == {"fields": 4, "span": 2.0}
    assert module.model.network.layers[0].linear.in_features == 3 * 5
    again = SpikingModule(**module.hparams)  # what a checkpoint rebuilds from
    assert again.model.encoder.centres.tolist() == module.model.encoder.centres.tolist()
    assert SpikingModule("regression", 3, 1, hidden=[8], encoder="direct").hparams.encoder_params == {}
    with pytest.raises(ConfigError, match=r"fields must be a whole number in \[2, 256\], got 1"):
        SpikingModule("classification", 3, 2, encoder={"kind": "receptive_field", "fields": 1})
    with pytest.raises(ConfigError, match=r"fields must be a whole number, got 2.5"):
        build_encoder("receptive_field", 4, settings={"fields": 2.5})
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['fields'\] for the direct encoder"):
        SpikingModule("classification", 3, 2, encoder={"kind": "direct", "fields": 4})
    with pytest.raises(ConfigError, match="encoder=auto takes no settings"):
        SpikingModule("classification", 3, 2, encoder="auto", encoder_params={"span": 1.0})


def test_the_encoder_group_and_a_plain_encoder_value_both_compose(tmp_path):
    from tests.conftest import compose_train

    chosen = compose_train(tmp_path, ["model/encoder=receptive_field", "model.encoder.span=1.5"])
    assert dict(chosen.model.encoder) == {"kind": "receptive_field", "fields": 8, "span": 1.5}
    plain = compose_train(tmp_path, ["model.encoder=direct"])  # the form used before the group
    assert plain.model.encoder == "direct"
    assert compose_train(tmp_path, []).model.encoder.kind == "auto"
