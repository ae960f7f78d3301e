"""What a trained model must be evaluated with: the record of its run, saved next to its weights.

A model is only comparable with the prompt template it was trained on, so training writes
``anatomy_r1_run.json`` into the saved model folder (``output_dir/final``) and evaluation reads it back.
Models trained before that file existed are still recognised by the run's ``config.yaml``, which
training writes into ``output_dir``, the model folder's parent. Both training and evaluation import this
module, so they cannot disagree on the file's name or fields.

The record also carries the completion length the run trained with (``max_completion_length``): a model
that learned to answer within 24 tokens gains nothing from 1024, and generating them can cost most of an
evaluation's time. Records written before that field existed get it from the run's ``config.yaml``
(``grpo.max_completion_length``) when that file is there and states it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
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
    max_completion_length: int | None = None
    max_completion_length_source: Path | None = None
    """Where ``max_completion_length`` was read: the record itself or, for an older one, ``config.yaml``."""


def write_run_info(
    folder: str | os.PathLike[str],
    *,
    name: str,
    method: str,
    template: str,
    dtype: str,
    base_model: str,
    max_completion_length: int | None = None,
) -> Path:
    """Write ``anatomy_r1_run.json`` into a saved model folder; returns its path.

    ``max_completion_length`` is left out when None (a run that generated nothing, such as SFT), so
    readers fall back to the run's config or their own default instead of a made-up number.
    """
    path = Path(folder) / RUN_INFO_FILE
    info: dict[str, Any] = {
        "name": name,
        "method": method,
        "template": template,
        "dtype": dtype,
        "base_model": base_model,
    }
    length = max_completion_length
    if length is not None:
        if not _is_length(length):
            raise ValueError(f"max_completion_length must be a positive integer, got {length!r}")
        info["max_completion_length"] = int(length)
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path


def _is_length(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _from_mapping(raw: Any, source: Path) -> RunInfo | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("template"), str):
        return None
    model = raw.get("model")
    dtype = raw.get("dtype", model.get("dtype") if isinstance(model, dict) else None)
    length = raw.get("max_completion_length")
    if length is None:  # a run config keeps it under grpo:, as trl.GRPOConfig names it
        grpo = raw.get("grpo")
        length = grpo.get("max_completion_length") if isinstance(grpo, dict) else None
    length = length if _is_length(length) else None
    return RunInfo(
        template=raw["template"],
        source=source,
        method=raw.get("method") if isinstance(raw.get("method"), str) else None,
        dtype=dtype if isinstance(dtype, str) else None,
        name=raw.get("name") if isinstance(raw.get("name"), str) else None,
        max_completion_length=length,
        max_completion_length_source=source if length is not None else None,
    )


def _read_run_config(path: Path) -> RunInfo | None:
    """``config.yaml`` of a training run, or None when it is missing, unreadable or not a run config."""
    if not path.is_file():
        return None
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict) or "method" not in raw:
        return None
    return _from_mapping(raw, path)


def read_run_info(model_dir: str | os.PathLike[str]) -> RunInfo | None:
    """The run record of ``model_dir``, or None for a model no run of ours trained (e.g. a base model).

    ``anatomy_r1_run.json`` in the folder wins; a broken one is a ``DataError`` (it claims to be a run
    record, so guessing past it could evaluate with the wrong prompt). Otherwise a ``config.yaml`` in the
    parent folder counts only when it reads as a run config (a mapping with ``template`` and ``method``),
    so an unrelated file next to a base model is not taken for one. A record without
    ``max_completion_length`` takes ``grpo.max_completion_length`` from that ``config.yaml`` when both
    belong to the same run (the config's ``name`` is the record's), so a model folder copied next to
    another run's config does not pick up that run's length.
    """
    d = Path(model_dir)
    own = d / RUN_INFO_FILE
    parent_cfg = d.parent / "config.yaml"
    if not own.is_file():
        return _read_run_config(parent_cfg)
    try:
        raw = json.loads(own.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{own}: not valid JSON ({e})") from None
    info = _from_mapping(raw, own)
    if info is None:
        raise DataError(f"{own}: expected an object with a string 'template'")
    length = raw.get("max_completion_length")
    if length is not None and not _is_length(length):
        raise DataError(f"{own}: 'max_completion_length' must be a positive integer, got {length!r}")
    if info.max_completion_length is None:
        run_cfg = _read_run_config(parent_cfg)
        if run_cfg is not None and run_cfg.max_completion_length is not None and run_cfg.name == info.name:
            info = replace(
                info,
                max_completion_length=run_cfg.max_completion_length,
                max_completion_length_source=parent_cfg,
            )
    return info
