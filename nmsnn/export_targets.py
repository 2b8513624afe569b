"""The files an export writes, checked before a checkpoint is loaded (no torch needed here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nmsnn.errors import ConfigError
from nmsnn.files import refuse_input

FORMATS = ("torchscript", "onnx", "nir")
DEFAULT_FORMATS = ("torchscript", "onnx")
FILES = {
    "torchscript": "model.torchscript.pt",
    "onnx": "model.onnx",
    "nir": "model.nir",
    "preprocessing": "preprocessing.json",
}


def export_targets(
    output_dir: str | Path, formats: Sequence[str] | str, overwrite: bool
) -> tuple[tuple[str, ...], dict[str, Path]]:
    """The chosen formats and ``{format or "preprocessing": path}``; refuses unknown formats, an
    ``output_dir`` that is a file, and (unless ``overwrite``) files that exist."""
    formats = (formats,) if isinstance(formats, str) else tuple(formats)  # formats=onnx: one format
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown export format(s) {unknown}; choose from {FORMATS}.")
    if not formats:
        raise ConfigError(f"formats is empty: nothing to export; choose from {FORMATS}.")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir={out} is a file; give a directory.")
    targets = {name: out / FILES[name] for name in (*formats, "preprocessing")}
    for path in targets.values():
        refuse_input(path)
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{', '.join(existing)}: file(s) exist; choose another output_dir or pass overwrite=true."
        )
    return formats, targets
