"""The experiment YAML's schema, validated before anything heavy is imported.

An experiment YAML names shared settings (data, a base ``TrainConfig``, evaluation) and a set of methods,
each a list of ``--set``-style overrides of that one base config. Because every method is a handful of
overrides of the same config, a table row differs from another only in what the method changes::

    name: synthetic
    seeds: 3                      # or a list: [0, 1, 2]
    data:
      synth: {seed: 20251219, n_train: 600, n_test: 300}   # or train: FILE, test: FILE, image_root: DIR
    base_config: null             # optional TrainConfig YAML (relative to this file); `base` is merged on top
    base: {template: compact_text, grpo: {max_steps: 120}}
    eval: {k: 5, greedy: true, batch_size: 32}
    methods:
      base: {train: false}        # zero-shot: the base model, evaluated only
      sft: {set: [method=sft]}
      grpo: {set: []}
      anatomy_r1: {set: [curriculum.enabled=true, gdqa.enabled=true]}
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from anatomy_r1.errors import ConfigError
from anatomy_r1.strict import StrictModel, format_validation_error
from anatomy_r1.training.config import read_yaml_mapping

__all__ = [
    "KNOWN_METHODS",
    "DataSettings",
    "EvalSettings",
    "ExperimentConfig",
    "MethodSpec",
    "SynthData",
    "load_experiment",
]

#: The methods of the paper's comparison, in table order; other names are allowed and listed after them.
KNOWN_METHODS: tuple[str, ...] = (
    "base",
    "sft",
    "grpo",
    "dr_grpo",
    "dapo",
    "gpg",
    "grpo_ascl",
    "grpo_gdqa",
    "anatomy_r1",
)
DEFAULT_LABELS: dict[str, str] = {
    "base": "Base (zero-shot)",
    "sft": "SFT",
    "grpo": "GRPO",
    "dr_grpo": "Dr.GRPO",
    "dapo": "DAPO",
    "gpg": "GPG",
    "grpo_ascl": "GRPO + ASCL",
    "grpo_gdqa": "GRPO + GDQA",
    "anatomy_r1": "Anatomy-R1 (ASCL + GDQA)",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SynthData(StrictModel):
    """Arguments of :func:`anatomy_r1.data.synth.generate_benchmark`; the data lands in ``OUT/data``."""

    seed: int = 20251219
    n_train: int = 600
    n_val: int = 0
    n_test: int = 300
    image_size: int = 84


class DataSettings(StrictModel):
    synth: SynthData | None = None
    train: str | None = None
    test: str | None = None
    image_root: str | None = None
    """Folder image paths resolve against; defaults to each data file's folder."""

    @model_validator(mode="after")
    def _one_source(self) -> DataSettings:
        files = self.train is not None or self.test is not None
        if self.synth is not None and files:
            raise ValueError("give either data.synth or data.train/data.test, not both")
        if self.synth is None and (self.train is None or self.test is None):
            raise ValueError("give data.synth, or both data.train and data.test")
        return self


class EvalSettings(StrictModel):
    k: int = Field(5, ge=0)
    """Sampled completions per test question for Avg@k; 0 scores greedy only."""
    greedy: bool = True
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    """Defaults to the method's ``grpo.max_completion_length`` (the length it was trained to use)."""
    temperature: float = Field(1.0, gt=0)
    limit: int | None = Field(None, ge=1)
    engine: Literal["hf", "vllm"] = "hf"
    """``vllm`` generates with vLLM (the ``vllm`` extra), as ``anatomy-r1 eval --engine vllm``."""
    vllm_args: dict[str, Any] = Field(default_factory=dict)
    """Arguments of ``vllm.LLM`` (``tensor_parallel_size``, ``max_model_len``, ...); only with engine vllm."""

    @model_validator(mode="after")
    def _something(self) -> EvalSettings:
        if self.k == 0 and not self.greedy:
            raise ValueError("eval needs k >= 1 or greedy: true")
        if self.vllm_args and self.engine != "vllm":
            raise ValueError("eval.vllm_args only apply with eval.engine: vllm")
        return self


class MethodSpec(StrictModel):
    set: list[str] = Field(default_factory=list)
    """``KEY=VALUE`` overrides of the base config, as with ``anatomy-r1 train --set``."""
    train: bool = True
    """False evaluates the base model as is (zero-shot)."""
    label: str | None = None
    description: str = ""


class ExperimentConfig(StrictModel):
    name: str
    description: str = ""
    seeds: int | list[int] = 3
    base_config: str | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    data: DataSettings
    eval: EvalSettings = Field(default_factory=EvalSettings)
    methods: dict[str, MethodSpec]
    equal_budget: bool = True
    """Refuse RL methods whose completion budget differs from the others'."""
    keep_models: bool = True
    """False deletes each run's trained model after its evaluation (large models, many runs)."""
    torch_threads: int | None = Field(None, ge=1)
    """CPU threads for torch; tiny models on a small shared CPU run faster with 1 than with contention."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be a plain folder name (letters, digits, _ . -)")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("must be a non-empty list of distinct seeds")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: dict[str, MethodSpec]) -> dict[str, MethodSpec]:
        if not v:
            raise ValueError("name at least one method")
        for name in v:
            if not _NAME_RE.match(name):
                raise ValueError(f"method name {name!r} must be a plain folder name (letters, digits, _ . -)")
        return v

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def label(self, method: str) -> str:
        spec = self.methods[method]
        return spec.label or DEFAULT_LABELS.get(method, method)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_experiment(path: str | Path) -> tuple[ExperimentConfig, Path]:
    """Read and validate an experiment YAML; returns it with the folder relative paths resolve against."""
    p = Path(path)
    raw = read_yaml_mapping(p, "experiment config")
    try:
        exp = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(p), ExperimentConfig)) from None
    return exp, p.resolve().parent
