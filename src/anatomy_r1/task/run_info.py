"""What a trained model must be evaluated with: the record of its run, saved next to its weights.

A model is only comparable with the prompt template it was trained on, so training writes
``anatomy_r1_run.json`` into the saved model folder (``output_dir/final``) and evaluation reads it back.
Models trained before that file existed are still recognised by the run's ``config.yaml``, which
training writes into ``output_dir``, the model folder's parent. Both training and evaluation import this
module, so they cannot disagree on the file's name or fields.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anatomy_r1.errors import DataError

__all__ = ["RUN_INFO_FILE", "RunInfo", "read_run_info", "write_run_info"]

RUN_INFO_FILE = "anatomy_r1_run.json"


@dataclass(frozen=True)
class RunInfo:
    """The settings of the run that trained a model folder, and the file they were read from."""

    template: str
    source: Path
    method: str | None = None
    dtype: str | None = None
    name: str | None = None


def write_run_info(
    folder: str | os.PathLike[str], *, name: str, method: str, template: str, dtype: str, base_model: str
) -> Path:
    """Write ``anatomy_r1_run.json`` into a saved model folder; returns its path."""
    path = Path(folder) / RUN_INFO_FILE
    info = {"name": name, "method": method, "template": template, "dtype": dtype, "base_model": base_model}
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path


def _from_mapping(raw: Any, source: Path) -> RunInfo | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("template"), str):
        return None
    model = raw.get("model")
    dtype = raw.get("dtype", model.get("dtype") if isinstance(model, dict) else None)
    return RunInfo(
        template=raw["template"],
        source=source,
        method=raw.get("method") if isinstance(raw.get("method"), str) else None,
        dtype=dtype if isinstance(dtype, str) else None,
        name=raw.get("name") if isinstance(raw.get("name"), str) else None,
    )


def read_run_info(model_dir: str | os.PathLike[str]) -> RunInfo | None:
    """The run record of ``model_dir``, or None for a model no run of ours trained (e.g. a base model).

    ``anatomy_r1_run.json`` in the folder wins; a broken one is a ``DataError`` (it claims to be a run
    record, so guessing past it could evaluate with the wrong prompt). Otherwise a ``config.yaml`` in the
    parent folder counts only when it reads as a run config (a mapping with ``template`` and ``method``),
    so an unrelated file next to a base model is not taken for one.
    """
    d = Path(model_dir)
    own = d / RUN_INFO_FILE
    if own.is_file():
        try:
            raw = json.loads(own.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{own}: not valid JSON ({e})") from None
        info = _from_mapping(raw, own)
        if info is None:
            raise DataError(f"{own}: expected an object with a string 'template'")
        return info
    parent_cfg = d.parent / "config.yaml"
    if not parent_cfg.is_file():
        return None
    import yaml

    try:
        raw = yaml.safe_load(parent_cfg.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict) or "method" not in raw:
        return None
    return _from_mapping(raw, parent_cfg)
