"""Seeing inside: spike statistics in TensorBoard, evaluation plots, energy estimate, summaries."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import matplotlib.image as mpimg
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from torch.utils.data import DataLoader

from nmsnn.analysis.activity import ActivityAccumulator, per_step_count
from nmsnn.core.encoders import ReceptiveFieldSettings
from nmsnn.data.batching import IndexBatchSampler, TensorRows
from nmsnn.lit.callbacks import SpikeStatistics
from nmsnn.lit.module import SpikingModule
from nmsnn.pipeline import train
from tests.conftest import compose_train

STATS = ("firing_rate", "mean_output", "dead_fraction", "saturated_fraction")


def events(directory: Path) -> EventAccumulator:
    return EventAccumulator(
        str(directory), size_guidance={"images": 0, "histograms": 0, "scalars": 0}
    ).Reload()


def hparams_tags(directory: Path) -> set[str]:
    tags = set()
    for path in directory.glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            tags |= {v.tag for v in event.summary.value if v.metadata.plugin_data.plugin_name == "hparams"}
    return tags


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect")
    cfg = compose_train(
        out,
        [
            "data=iris",
            "model.hidden=[16,16]",
            "trainer.max_epochs=3",
            "callbacks.spike_statistics.figure_every_n_epochs=2",
        ],
    )
    return out, train(cfg)


def test_every_tag_is_in_the_event_files(run):
    out, _ = run
    ev = events(out / "tensorboard")
    tags = ev.Tags()
    for layer in ("layer1", "layer2"):
        for stat in STATS:
            assert f"val/spikes/{layer}/{stat}" in tags["scalars"]
            assert f"test/spikes/{layer}/{stat}" in tags["scalars"]
        assert f"spikes/{layer}/neuron_rates" in tags["histograms"]
        assert f"membrane/{layer}" in tags["histograms"]
    assert (
        len(ev.Scalars("val/spikes/layer1/firing_rate")) == 3
    )  # every epoch (the final validate is not logged)
    for tag in (
        "test/synops_per_row",
        "test/synops_from_spikes_per_row",
        "test/ann_macs_per_row",
        "test/synops_per_mac",
    ):
        assert tag in tags["scalars"]
    assert "spikes/activity" in tags["images"]
    for plot in ("confusion_matrix", "roc", "precision_recall"):
        assert f"test/plots/{plot}" in tags["images"]
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= hparams_tags(out / "tensorboard")
    assert (
        "hparams/test/acc" in tags["scalars"] and "hparams/val/spikes/layer1/firing_rate" in tags["scalars"]
    )


def test_plots_metrics_json_and_summary(run):
    out, metrics = run
    for name in ("confusion_matrix", "roc", "precision_recall"):
        image = mpimg.imread(out / "plots" / f"{name}.png")
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0.01
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"]["test/acc"] == pytest.approx(metrics["test/acc"])
    assert 0 < summary["metrics"]["test/spikes/layer1/firing_rate"] < 1
    # sum of in * out over the layers; the default classification encoder (receptive fields)
    # gives the first layer 1 + FIELDS inputs per feature
    FIELDS = ReceptiveFieldSettings().fields
    assert summary["metrics"]["test/ann_macs_per_row"] == 4 * (1 + FIELDS) * 16 + 16 * 16 + 16 * 3
    assert set(summary["plots"]) == {"confusion_matrix", "roc", "precision_recall"}
    text = (out / "summary.md").read_text()
    assert "Spike statistics" in text and "Energy estimate" in text and "best.ckpt" in text


def test_regression_plots(tmp_path):
    train(compose_train(tmp_path, ["data=diabetes", "trainer.max_epochs=1", "logger=none"]))
    for name in ("predicted_vs_true", "residuals"):
        assert mpimg.imread(tmp_path / "plots" / f"{name}.png").std() > 0.01


def fixed_module(threshold: float, weight: float | None = None, **kwargs) -> SpikingModule:
    torch.manual_seed(0)
    module = SpikingModule(
        "classification",
        4,
        2,
        hidden=[6],
        encoder="direct",
        time_steps=10,
        neuron={"threshold": threshold, "penalty": 0.0},
        **kwargs,
    )
    if weight is not None:
        for layer in module.model.network.layers:
            torch.nn.init.constant_(layer.linear.weight, weight)
            torch.nn.init.zeros_(layer.linear.bias)
    return module.eval()


def validate_and_read(module: SpikingModule, x: torch.Tensor, tmp_path: Path) -> dict[str, float]:
    rows = TensorRows(x, torch.zeros(len(x), dtype=torch.long))
    loader = DataLoader(rows, sampler=IndexBatchSampler(len(x), 7), batch_size=None)
    logger = TensorBoardLogger(str(tmp_path), name="tb", version="")
    trainer = L.Trainer(
        logger=logger, callbacks=[SpikeStatistics()], enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(module, loader, verbose=False)
    ev = events(tmp_path / "tb")
    return {stat: ev.Scalars(f"val/spikes/layer1/{stat}")[-1].value for stat in STATS}


def test_firing_rate_read_back_equals_a_direct_computation(tmp_path):
    module = fixed_module(threshold=1.0)
    x = torch.randn(20, 4) * 2
    with torch.no_grad():
        spikes = module(x).network.layers[0].spikes
    expected_rate = float((spikes > 0).float().mean())
    expected_dead = float(((spikes > 0).sum((0, 1)) == 0).float().mean())
    logged = validate_and_read(module, x, tmp_path)
    assert 0 < expected_rate < 1
    assert logged["firing_rate"] == pytest.approx(expected_rate, abs=1e-6)
    assert logged["mean_output"] == pytest.approx(float(spikes.mean()), rel=1e-5)
    assert logged["dead_fraction"] == pytest.approx(expected_dead, abs=1e-6)


def test_huge_threshold_is_all_dead(tmp_path):
    logged = validate_and_read(fixed_module(threshold=1e9, weight=0.1), torch.randn(20, 4), tmp_path)
    assert logged["dead_fraction"] == 1.0 and logged["firing_rate"] == 0.0


def test_tiny_threshold_and_large_inputs_saturate(tmp_path):
    logged = validate_and_read(
        fixed_module(threshold=1e-3, weight=0.5), torch.rand(20, 4) * 100 + 1, tmp_path
    )
    assert logged["saturated_fraction"] == 1.0 and logged["dead_fraction"] == 0.0


def test_firing_counts_equal_a_boolean_reduction():
    """The accumulator's per-neuron counts (summed signs) equal counting ``spikes > 0`` directly,
    over all steps and after the burn-in; in bfloat16 too, past the 256 its mantissa holds."""
    module = fixed_module(threshold=0.5, burn_in=3)
    x = torch.randn(300, 4) * 2
    with torch.no_grad():
        out = module(module.model.encoder(x)).network
    acc = ActivityAccumulator(module.model.network, burn_in=3)
    acc.update(module.model.encoder(x), out)
    fired = out.layers[0].spikes > 0
    assert 0 < fired.float().mean() < 1
    assert torch.equal(acc.state["fired/0"], fired.sum((0, 1)).double())
    assert torch.equal(acc.state["fired_late/0"], fired[3:].sum((0, 1)).double())
    ones = torch.ones(2, 3000, 5, dtype=torch.bfloat16)
    assert torch.equal(per_step_count(ones), torch.full((2, 5), 3000.0, dtype=torch.float64))


def test_synaptic_operations_count_events_times_fan_out():
    module = fixed_module(threshold=1.0, readout="spikes")
    x = torch.randn(5, 4)
    inputs = module.model.encoder(x)
    with torch.no_grad():
        out = module(inputs).network
    acc = ActivityAccumulator(module.model.network)
    acc.update(inputs, out)
    energy = acc.energy()
    hidden_events = float((out.layers[0].spikes != 0).sum())
    assert energy["synops_from_spikes_per_row"] == pytest.approx(hidden_events * 2 / 5)
    assert energy["synops_per_row"] == pytest.approx((float((inputs != 0).sum()) * 6 + hidden_events * 2) / 5)
    assert energy["ann_macs_per_row"] == 4 * 6 + 6 * 2


def test_a_spike_statistic_can_be_the_monitor_and_unwatched_ones_are_skipped(tmp_path, monkeypatch):
    """``monitor=val/spikes/...`` drives checkpoints and early stopping; with no logger and no
    such monitor, training's validation epochs compute no statistics (testing still does)."""
    started: list[str] = []
    start = SpikeStatistics._start

    def recording_start(self, pl_module):
        started.append(pl_module.trainer.state.fn)
        start(self, pl_module)

    monkeypatch.setattr(SpikeStatistics, "_start", recording_start)
    common = ["data=iris", "model.hidden=[16]", "trainer.max_epochs=3", "logger=none"]
    watched = ["monitor=val/spikes/layer1/firing_rate", "monitor_mode=max"]
    metrics = train(compose_train(tmp_path / "watched", [*common, *watched]))
    assert started.count("fit") == 3 and 0 <= metrics["val/spikes/layer1/firing_rate"] <= 1
    best = torch.load(tmp_path / "watched" / "checkpoints" / "best.ckpt", weights_only=False)
    callbacks = best["callbacks"]
    score = next(v["best_model_score"] for k, v in callbacks.items() if k.startswith("ModelCheckpoint"))
    assert 0 <= float(score) <= 1  # a firing rate, not a loss

    started.clear()
    metrics = train(compose_train(tmp_path / "unwatched", common))
    assert "fit" not in started and "test" in started and metrics["test/synops_per_row"] > 0
