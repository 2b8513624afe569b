"""Exporting a trained model for deployment: TorchScript, ONNX and NIR (neuromorphic hardware).

The exported model maps *preprocessed* rows ``[B, F]`` (float32) to class probabilities
``[B, C]`` or regression values ``[B]``, with the deterministic evaluation encoding inside (its
noise table is a constant of the graph) and the time loop unrolled. The preprocessing travels
beside it as ``preprocessing.json``: for each numeric column ``(value - center) / scale`` after
replacing a missing value with ``impute``, then one 0/1 column per category of each text column
(``categories``), in the order of ``feature_names``; class labels are ``classes``. ``nir``
writes the spiking network itself as a NIR graph (:mod:`nmsnn.neuromorphic`), whose input is
the encoded train.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.errors import ConfigError
from nmsnn.export_targets import DEFAULT_FORMATS, FILES, FORMATS, export_targets
from nmsnn.files import write_atomic, write_text
from nmsnn.lit.module import SpikingModule, output_values
from nmsnn.quiet import quiet_loggers

log = logging.getLogger(__name__)


class InferenceModel(nn.Module):
    """Preprocessed rows ``[B, F]`` -> probabilities ``[B, C]`` or values ``[B]``, deterministic."""

    def __init__(self, module: SpikingModule) -> None:
        super().__init__()
        hparams = {**module.hparams, "backend": "reference"}  # plain torch ops: traceable
        copy = SpikingModule(**hparams)
        copy.load_state_dict(module.state_dict())
        self.model = copy.model.eval()
        self.model.encoder.freeze(hparams["num_inputs"])
        self.task = hparams["task"]
        self.target_mean = float(hparams["target_mean"])
        self.target_std = float(hparams["target_std"])
        self.target_transform = str(hparams.get("target_transform", "none"))
        self.num_inputs = int(hparams["num_inputs"])

    def forward(self, x: Tensor) -> Tensor:
        return output_values(
            self.model(x).prediction, self.task, self.target_mean, self.target_std, self.target_transform
        )


def example_rows(model: InferenceModel, rows: int = 4) -> Tensor:
    return torch.zeros(rows, model.num_inputs)


def to_torchscript(model: InferenceModel, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example_rows(model), check_trace=False)
    traced.save(str(path))


# The ONNX exporter and its graph optimizer log each pass (torchvision ops skipped, nodes removed,
# initializers merged): dozens of lines per export that say nothing about the model.
EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


def to_onnx(model: InferenceModel, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), quiet_loggers(EXPORTER_LOGGERS):
        program = torch.onnx.export(
            model,
            (example_rows(model),),
            dynamo=True,
            input_names=["rows"],
            output_names=["output"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
        program.save(str(path))


def export(
    module: SpikingModule,
    preprocessor: TabularPreprocessor,
    output_dir: str | Path,
    formats: Sequence[str] | str = DEFAULT_FORMATS,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write the chosen formats and ``preprocessing.json`` to ``output_dir``; return their paths.

    Refuses to replace existing files unless ``overwrite``; every file is written to a temporary
    name and moved into place.
    """
    formats, targets = export_targets(output_dir, formats, overwrite)
    out = Path(output_dir)
    stale = [str(out / FILES[f]) for f in FORMATS if f not in formats and (out / FILES[f]).exists()]
    if stale:
        log.warning(
            "%s: left from an earlier export (not in formats=%s); remove it if it is stale.",
            ", ".join(stale),
            ",".join(formats),
        )
    if "nir" in formats:  # refused before any file is written
        from nmsnn.neuromorphic import nir_refusal

        reason = nir_refusal(module)
        if reason:
            raise ConfigError(f"formats=[nir]: {reason}.")
    model = InferenceModel(module)
    writers = {
        "torchscript": to_torchscript,
        "onnx": to_onnx,
        "nir": lambda _, path: _write_nir(module, path),
    }
    for name in formats:
        write_atomic(targets[name], lambda tmp, name=name: writers[name](model, Path(tmp)), overwrite=True)
    spec = {
        **preprocessor.state_dict(),
        "feature_names": preprocessor.feature_names,
        "output": output_spec(preprocessor),
    }
    write_text(json.dumps(spec, indent=2), targets["preprocessing"], overwrite=True)
    return targets


def _write_nir(module: SpikingModule, path: Path) -> None:
    from nmsnn.neuromorphic import write_nir

    write_nir(module, path)


def output_spec(preprocessor: TabularPreprocessor) -> str:
    if preprocessor.task == "classification":
        return "probabilities [B, C], one column per entry of 'classes'"
    return "predicted values [B] on the original target scale"
