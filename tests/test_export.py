"""Export: TorchScript and ONNX give the PyTorch model's outputs; files are never overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nmsnn.data.datamodule import TabularDataModule
from nmsnn.data.preprocessing import TabularPreprocessor
from nmsnn.errors import ConfigError
from nmsnn.export import export
from nmsnn.lit.module import SpikingModule

# fp32 outputs agree to rounding: the same ops in another order (ONNX Runtime's kernels); RTOL
# for regression values on the target's own scale (diabetes: ~150, where fp32 steps by 1.5e-5)
TOLERANCE = 1e-5
RTOL = 1e-6


@pytest.fixture(scope="module", params=["wine", "diabetes"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    dm = TabularDataModule(dataset=request.param)
    dm.setup()
    module = SpikingModule(**dm.model_kwargs(), hidden=[32, 16], time_steps=8, encoder="uniform_noise").eval()
    out = tmp_path_factory.mktemp(request.param)
    return module, dm, export(module, dm.preprocessor, out)


def test_torchscript_equals_pytorch(exported):
    module, dm, paths = exported
    x = dm.tensors["test"].x
    scripted = torch.jit.load(str(paths["torchscript"]))
    with torch.no_grad():
        got = scripted(x).numpy()
    np.testing.assert_allclose(got, module.predict_rows(x).numpy(), atol=TOLERANCE, rtol=RTOL)


def test_onnx_runtime_equals_pytorch(exported):
    ort = pytest.importorskip("onnxruntime")
    module, dm, paths = exported
    x = dm.tensors["test"].x
    session = ort.InferenceSession(str(paths["onnx"]))
    (got,) = session.run(None, {"rows": x.numpy()})
    np.testing.assert_allclose(got, module.predict_rows(x).numpy(), atol=TOLERANCE, rtol=RTOL)
    (one,) = session.run(None, {"rows": x[:1].numpy()})  # any batch size
    np.testing.assert_allclose(one, got[:1], atol=TOLERANCE, rtol=RTOL)


def test_preprocessing_travels_as_json(exported):
    _module, dm, paths = exported
    spec = json.loads(paths["preprocessing"].read_text())
    assert spec["feature_names"] == dm.preprocessor.feature_names
    raw = dm.split_frame("test")[spec["numeric"]].to_numpy(dtype=float)
    by_hand = (raw - np.asarray(spec["center"])) / np.asarray(spec["scale"])
    # data.bins: each numeric column's piecewise-linear bins between its bin_edges, then
    bins = [
        np.clip((by_hand[:, [j]] - np.asarray(e[:-1])) / np.diff(e), 0, 1)
        for j, e in enumerate(spec["bin_edges"])
        if e
    ]
    by_hand = np.concatenate([by_hand, *bins], axis=1)
    np.testing.assert_allclose(by_hand, dm.tensors["test"].x.numpy(), rtol=1e-5, atol=1e-5)
    rebuilt = TabularPreprocessor.from_state_dict(spec)
    np.testing.assert_array_equal(rebuilt.transform(dm.split_frame("test")), dm.tensors["test"].x.numpy())


def test_export_refuses_to_overwrite(exported):
    module, dm, paths = exported
    before = paths["torchscript"].read_bytes()
    with pytest.raises(ConfigError, match="file\\(s\\) exist"):
        export(module, dm.preprocessor, paths["torchscript"].parent, formats=("torchscript",))
    assert paths["torchscript"].read_bytes() == before
    with pytest.raises(ConfigError, match="unknown export format"):
        export(module, dm.preprocessor, paths["torchscript"].parent / "new", formats=("tflite",))


def test_export_settings_are_checked(exported, tmp_path, caplog):
    module, dm, _ = exported
    with pytest.raises(ConfigError, match="formats is empty"):
        export(module, dm.preprocessor, tmp_path / "none", formats=())
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a directory"):
        export(module, dm.preprocessor, tmp_path / "a_file", formats=("torchscript",))
    one = export(module, dm.preprocessor, tmp_path / "one", formats="torchscript")  # formats=torchscript
    assert set(one) == {"torchscript", "preprocessing"}
    export(module, dm.preprocessor, tmp_path / "one", formats="onnx", overwrite=True)
    with caplog.at_level("WARNING"):
        export(module, dm.preprocessor, tmp_path / "one", formats=("torchscript",), overwrite=True)
    assert "model.onnx: left from an earlier export (not in formats=torchscript)" in caplog.text
