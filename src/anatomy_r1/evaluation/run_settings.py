"""Generation settings a model must be evaluated with, taken from the run that trained it.

A model answers in the prompt format and within the completion length it was trained on. Evaluating it
with another template measures the prompt change as much as the model (most of its answers can become
unreadable), and generating 1024 tokens for a model trained to stop after 24 only costs time.
``anatomy-r1 eval`` and ``anatomy-r1 probe`` therefore share this resolution: an explicit option wins,
else the run's value, else the command's default; an option that overrides a different run value is
allowed (it can be the point of the evaluation) but never silent; and every value is recorded with where
it came from, so an output file says how it was produced. The options both commands share are checked
here too (:func:`check_generation_options`), so a value one command accepts the other accepts as well.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.task.prompts import check_template
from anatomy_r1.task.run_info import RunInfo, read_run_info

__all__ = [
    "DEFAULTS",
    "DTYPE_ALIASES",
    "FLAGS",
    "FROM_DEFAULT",
    "FROM_FLAG",
    "FROM_RUN",
    "ResolvedSettings",
    "Setting",
    "canonical_dtype",
    "check_generation_options",
    "resolve_run_settings",
]

FROM_FLAG = "flag"
FROM_RUN = "run"
FROM_DEFAULT = "default"

DEFAULTS: dict[str, Any] = {"template": "anatomy_r1", "max_new_tokens": 1024, "dtype": "fp32"}
"""What a model of no run of ours is evaluated with."""
FLAGS = {"template": "--template", "max_new_tokens": "--max-new-tokens", "dtype": "--dtype"}
_WHAT = {
    "template": "the template the model was trained with",
    "max_new_tokens": "the completion length the model was trained with (max_completion_length)",
    "dtype": "the precision the model was trained in",
}
DTYPE_ALIASES = {  # the names the model loader takes, each to the one name outputs record
    "fp32": "fp32",
    "float32": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
}


def canonical_dtype(name: str | None) -> str | None:
    """``bfloat16`` -> ``bf16`` and so on; None for a name no loader here understands."""
    return DTYPE_ALIASES.get(name.strip().lower()) if isinstance(name, str) else None


def _given_dtype(name: str) -> str:
    short = canonical_dtype(name)
    if short is None:
        raise ConfigError(f"unknown --dtype {name!r}; choose one of {', '.join(DTYPE_ALIASES)}")
    return short


def check_generation_options(
    *,
    template: str | None,
    batch_size: int | None,
    max_new_tokens: int | None,
    limit: int | None,
    dtype: str | None,
) -> None:
    """Refuse a bad generation option before any file is read, so a typo costs seconds, not a model load.

    None means not given: the run's value (checked by :func:`resolve_run_settings`) or a default follows.
    """
    if template is not None:
        check_template(template)
    for flag, value in (("--batch-size", batch_size), ("--max-new-tokens", max_new_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1")
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be at least 1")
    if dtype is not None:
        _given_dtype(dtype)


@dataclass(frozen=True)
class Setting:
    """One resolved setting: the value used, where it came from, and the run's value it replaced."""

    value: Any
    origin: str
    """``flag`` (given on the command line), ``run`` (the model's run record) or ``default``."""
    file: Path | None = None
    """The run file the value (or the overridden run value) was read from."""
    run_value: Any = None
    """The run's value, when an explicit option replaced it with another."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "from": self.origin}
        if self.file is not None:
            out["file"] = str(self.file)
        if self.run_value is not None:
            out["run_value"] = self.run_value
        return out


@dataclass(frozen=True)
class ResolvedSettings:
    """The resolved settings by name, the run record they came from, and the warnings to print."""

    settings: dict[str, Setting]
    run: RunInfo | None
    warnings: list[str]

    def value(self, name: str) -> Any:
        return self.settings[name].value

    def as_json(self) -> dict[str, dict[str, Any]]:
        return {name: s.as_json() for name, s in self.settings.items()}


def _run_values(info: RunInfo | None) -> dict[str, tuple[Any, Path | None]]:
    if info is None:
        return {}
    out: dict[str, tuple[Any, Path | None]] = {"template": (info.template, info.source)}
    if info.max_completion_length is not None:
        out["max_new_tokens"] = (info.max_completion_length, info.max_completion_length_source)
    dtype = canonical_dtype(info.dtype)
    if dtype is not None:
        out["dtype"] = (dtype, info.source)
    return out


def resolve_run_settings(
    model_dir: str | os.PathLike[str] | None, given: Mapping[str, Any]
) -> ResolvedSettings:
    """Resolve ``template``, ``max_new_tokens`` and ``dtype`` for a model folder.

    ``given`` holds the command-line values (None where the option was not given); ``model_dir`` None
    means a model that cannot be a run of ours (the built-in base model), so only options and defaults
    apply. The dtype is recorded by its short name whichever alias was given, and the template is checked
    once resolved: a run's record can name one this version does not know. A broken run record raises
    the ``DataError`` of :func:`read_run_info`; an unknown dtype or template a ``ConfigError``.
    """
    info = read_run_info(model_dir) if model_dir is not None else None
    run = _run_values(info)
    settings: dict[str, Setting] = {}
    warnings: list[str] = []
    for name in DEFAULTS:
        value = given.get(name)
        if name == "dtype" and value is not None:
            value = _given_dtype(value)
        if name in run:
            run_value, file = run[name]
            if value is None:
                settings[name] = Setting(run_value, FROM_RUN, file)
                continue
            if value != run_value:
                warnings.append(
                    f"{FLAGS[name]} {value} differs from {_WHAT[name]} ({run_value}, from {file})"
                )
                settings[name] = Setting(value, FROM_FLAG, file, run_value)
            else:
                settings[name] = Setting(value, FROM_FLAG, file)
        elif value is not None:
            settings[name] = Setting(value, FROM_FLAG)
        else:
            settings[name] = Setting(DEFAULTS[name], FROM_DEFAULT)
    check_template(settings["template"].value)
    return ResolvedSettings(settings, info, warnings)
