"""One YAML file per experiment: every knob of a run, validated before anything heavy is imported.

Unknown keys are errors (a typo must not silently fall back to a default), and ``--set a.b=value``
overrides any field from the command line with YAML typing (``--set grpo.beta=0.04``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from anatomy_r1.augment.settings import GDQASettings
from anatomy_r1.curriculum.settings import CurriculumSettings
from anatomy_r1.data.images import DEFAULT_IMAGE_CACHE_MB
from anatomy_r1.errors import ConfigError
from anatomy_r1.strict import StrictModel, closest, did_you_mean, format_validation_error

#: ``peft.LoraConfig`` fields the run decides, not the ``model.lora`` section.
LORA_OWNED_ELSEWHERE: dict[str, str] = {
    "task_type": "the trainer (always CAUSAL_LM)",
    "peft_type": "peft (LoRA)",
    "inference_mode": "the trainer (the adapter is trained)",
    "base_model_name_or_path": "model.path",
    "revision": "model.path (local folders only)",
    "auto_mapping": "peft",
    "peft_version": "peft",
}

#: Attention back-ends ``from_pretrained(attn_implementation=...)`` accepts in transformers 5.
ATTN_IMPLEMENTATIONS = (
    "eager",
    "sdpa",
    "flash_attention_2",
    "flash_attention_3",
    "flash_attention_4",
    "flex_attention",
)


class LoraSettings(BaseModel):
    """``peft.LoraConfig`` for the adapter TRL attaches (``GRPOTrainer(peft_config=...)``).

    The four usual keys have defaults of their own; any other key must be a ``peft.LoraConfig`` field
    (checked against the installed peft's source, so a typo fails when the YAML is read) and is passed
    through unchanged.
    """

    model_config = ConfigDict(extra="allow")
    r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    @model_validator(mode="before")
    @classmethod
    def _peft_fields(cls, data: Any) -> Any:
        from anatomy_r1.training.trl_fields import lora_config_fields

        if not isinstance(data, dict):
            return data
        valid = [k for k in lora_config_fields() if k not in LORA_OWNED_ELSEWHERE]
        for key in data:
            if key in LORA_OWNED_ELSEWHERE:
                raise ValueError(f"{key} is set by {LORA_OWNED_ELSEWHERE[key]}, not in model.lora")
            if key not in valid:
                raise ValueError(f"{key!r} is not a field of peft.LoraConfig{did_you_mean(str(key), valid)}")
        return data


class ModelConfig(StrictModel):
    path: str = "builtin:tiny-base"
    """A local checkpoint directory, or ``builtin:tiny-base`` for the cached tiny base model."""
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    lora: LoraSettings | None = None
    """A LoRA adapter instead of full fine-tuning; None trains all (unfrozen) weights."""
    attn_implementation: Literal[ATTN_IMPLEMENTATIONS] | None = None  # type: ignore[valid-type]
    """Passed to ``from_pretrained``; None keeps transformers' choice (sdpa where it can)."""
    freeze_vision: bool = False
    """Freeze the vision tower (with its merger) and keep LoRA adapters off it."""
    min_pixels: int | None = Field(None, ge=1)
    """Qwen2/2.5-VL image processor: images with fewer pixels are upscaled (its ``size.shortest_edge``)."""
    max_pixels: int | None = Field(None, ge=1)
    """Images with more pixels are downscaled, bounding the image tokens per image (``size.longest_edge``)."""

    @model_validator(mode="after")
    def _pixel_range(self) -> ModelConfig:
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is larger than max_pixels ({self.max_pixels})")
        return self


class DataConfig(StrictModel):
    train: str = ""
    eval: str | None = None
    """Held-out file TRL evaluates during training (``grpo.eval_strategy``/``eval_steps``, or ``sft.extra``);
    required together with an eval strategy other than ``no``, and refused without one."""
    image_root: str | None = None
    """Folder image paths resolve against; defaults to the folder of each data file."""
    limit: int | None = None
    image_cache_mb: int = Field(default=DEFAULT_IMAGE_CACHE_MB, ge=0)
    """Decoded frames each process (rank, dataloader worker) keeps, in MiB; 0 decodes on every fetch."""


class RewardConfig(StrictModel):
    accuracy: float = 1.0
    format: float = 0.5
    valid_choice: float = 0.0
    """Weight of the reward for naming one of the offered options at all; 0 leaves that reward out."""

    def spec(self) -> dict[str, float]:
        """Reward name -> weight, as ``build_reward_funcs`` takes it (a 0-weight ``valid_choice`` is left
        out, so runs that do not ask for it log exactly what they did before it existed)."""
        out = {"accuracy": self.accuracy, "format": self.format}
        if self.valid_choice:
            out["valid_choice"] = self.valid_choice
        return out


#: ``trl.GRPOConfig`` fields that other sections of the run config own; setting them under ``grpo:`` too
#: would give one setting two homes.
GRPO_OWNED_ELSEWHERE: dict[str, str] = {
    "output_dir": "output_dir (or --output-dir)",
    "seed": "seed",
    "data_seed": "seed",
    "bf16": "model.dtype",
    "fp16": "model.dtype",
    "use_cpu": "nothing: it follows whether a GPU is present",
    "reward_weights": "rewards.accuracy / rewards.format / rewards.valid_choice",
    "logging_steps": "logging.logging_steps",
    "report_to": "logging.report_to",
    "save_strategy": "saving.save_steps",
    "save_steps": "saving.save_steps",
    "save_total_limit": "saving.save_total_limit",
}


def check_grpo_keys(section: dict[str, Any]) -> None:
    """Refuse a ``grpo:`` key that ``trl.GRPOConfig`` does not have, naming the closest field that it has."""
    from anatomy_r1.training.trl_fields import NO_DEFAULT, grpo_config_fields

    fields = grpo_config_fields()
    for key, value in section.items():
        if key in GRPO_OWNED_ELSEWHERE:
            raise ValueError(f"grpo.{key} is set by {GRPO_OWNED_ELSEWHERE[key]}, not in the grpo section")
        if key not in fields:
            raise ValueError(f"grpo.{key} is not a field of trl.GRPOConfig{did_you_mean(key, list(fields))}")
        default = fields[key]
        if default is NO_DEFAULT or default is None or value is None:
            continue
        # TRL's dataclass does not check types; a number typed as a word would fail deep inside training.
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = True
        if not ok:
            raise ValueError(
                f"grpo.{key}: expected {type(default).__name__} (TRL's default is {default!r}), got {value!r}"
            )


class SFTKnobs(StrictModel):
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    max_steps: int = -1
    num_train_epochs: float = 1.0
    max_length: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class LoggingConfig(StrictModel):
    logging_steps: int = 1
    report_to: list[str] | str = "none"
    """Passed to TRL as ``report_to`` (``tensorboard``, ``wandb``, ``trackio``, ...; ``none`` by default), for
    GRPO and SFT alike. It lives here, not under ``grpo:``, because it only observes the run."""
    progress_bar: bool = True

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "tensorboard" in data:
            raise ValueError("logging.tensorboard is replaced by report_to: [tensorboard] (or wandb, ...)")
        return data


class SavingConfig(StrictModel):
    save_steps: int = 50
    save_total_limit: int | None = 2


def _check_eval_pairing(data: DataConfig | None, strategy: Any, section: str) -> None:
    """``data.eval`` and an evaluation schedule come together: either alone would be silently ignored."""
    has_eval = data is not None and bool(data.eval)
    if has_eval and strategy in (None, "no"):
        raise ValueError(
            f"data.eval is set but {section}.eval_strategy is 'no', so it would never be evaluated; "
            f"set {section}.eval_strategy: steps (and {section}.eval_steps: N) or remove data.eval"
        )
    if not has_eval and strategy not in (None, "no"):
        raise ValueError(
            f"{section}.eval_strategy is {strategy!r} but data.eval (the file to evaluate) is not set"
        )


class TrainConfig(StrictModel):
    name: str = "run"
    method: Literal["grpo", "sft"] = "grpo"
    seed: int = 0
    output_dir: str = "runs/run"
    template: str = "anatomy_r1"
    """The prompt template (``anatomy_r1.task.prompts.TEMPLATE_NAMES``), checked when the config is read."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rewards: RewardConfig = Field(default_factory=RewardConfig)
    grpo: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    """Passed to ``trl.GRPOConfig`` as written: its keys are that dataclass's fields, its defaults TRL's."""
    sft: SFTKnobs = Field(default_factory=SFTKnobs, validate_default=True)
    curriculum: CurriculumSettings = Field(default_factory=CurriculumSettings)
    """ASCL (``anatomy_r1.curriculum.settings``)."""
    gdqa: GDQASettings = Field(default_factory=GDQASettings)
    """GDQA (``anatomy_r1.augment.settings``)."""
    dynamic_sampling: bool = False
    """Resample groups whose rewards are all equal: DAPO refills the dropped slots; with ``gpg: release``
    a whole fresh batch replaces the batch once its valid groups fill one (training.dapo)."""
    gpg: bool | Literal["release"] = False
    """GPG: no clipping, α = groups / valid groups. ``true``: the paper's (no std scaling, α scales the
    advantages); ``release``: as the authors' released trainer runs it (training.gpg_release)."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    saving: SavingConfig = Field(default_factory=SavingConfig)

    @field_validator("template")
    @classmethod
    def _known_template(cls, v: str) -> str:
        from anatomy_r1.task.prompts import TEMPLATE_NAMES as TEMPLATES

        if v not in TEMPLATES:
            near = closest(v.replace("-", "_"), TEMPLATES, cutoff=0.5)
            hint = f"; did you mean {near!r}?" if near else ""
            raise ValueError(f"unknown prompt template {v!r} (templates: {', '.join(TEMPLATES)}){hint}")
        return v

    @field_validator("grpo")
    @classmethod
    def _grpo_fields(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        check_grpo_keys(v)
        if info.data.get("method") == "grpo":
            _check_eval_pairing(info.data.get("data"), v.get("eval_strategy", "no"), "grpo")
        return v

    @field_validator("sft")
    @classmethod
    def _sft_eval(cls, v: SFTKnobs, info: ValidationInfo) -> SFTKnobs:
        if info.data.get("method") == "sft":
            _check_eval_pairing(info.data.get("data"), v.extra.get("eval_strategy", "no"), "sft.extra")
        return v

    @model_validator(mode="after")
    def _gpg_settings(self) -> TrainConfig:
        if self.method == "grpo" and self.gpg:
            refusal = gpg_refusal(
                self.gpg,
                dynamic_sampling=self.dynamic_sampling,
                scale_rewards=self.grpo_setting("scale_rewards"),
                loss_type=self.grpo_setting("loss_type"),
                delta=self.grpo_setting("delta"),
            )
            if refusal:
                raise ValueError(refusal)
        return self

    def grpo_setting(self, key: str) -> Any:
        """A GRPO setting as TRL will see it: the config's value, else TRL's literal default.

        ``scale_rewards`` comes back in TRL's words (``GRPOConfig`` reads true as group and false as none),
        so a check of it accepts every spelling TRL accepts.
        """
        from anatomy_r1.training.trl_fields import NO_DEFAULT, grpo_config_fields

        value = self.grpo[key] if key in self.grpo else grpo_config_fields().get(key, NO_DEFAULT)
        if value is NO_DEFAULT:
            raise ConfigError(f"grpo.{key} has no literal default in trl.GRPOConfig; set it in the config")
        if key == "scale_rewards" and isinstance(value, bool):
            return TRL_SCALE_REWARDS[value]
        return value


#: How ``trl.GRPOConfig`` reads a boolean ``scale_rewards``.
TRL_SCALE_REWARDS = {True: "group", False: "none"}


def gpg_refusal(
    gpg: bool | str, *, dynamic_sampling: bool, scale_rewards: Any, loss_type: Any, delta: Any
) -> str | None:
    """The settings ``gpg`` stands for that a run lacks, in one line (None when it has them all).

    ``gpg: true`` is the paper's GPG (training.gpg), ``gpg: release`` the authors' released trainer
    (training.gpg_release); each names every setting it misses, so one edit fixes the config.
    ``scale_rewards`` is taken in TRL's words (``TrainConfig.grpo_setting``, or the trainer's own).
    """
    if not gpg:
        return None
    if isinstance(scale_rewards, bool):
        scale_rewards = TRL_SCALE_REWARDS[scale_rewards]
    wrong = []
    if gpg == "release":
        if not dynamic_sampling:
            wrong.append("dynamic_sampling: true (the release computes α only inside dynamic sampling)")
        if scale_rewards != "group":
            wrong.append(
                f"grpo.scale_rewards: group (got {scale_rewards!r}; the release divides by the group std)"
            )
        if loss_type != "bnpo":
            wrong.append(
                f"grpo.loss_type: bnpo (got {loss_type!r}; the release averages the micro-batch's tokens)"
            )
    elif scale_rewards != "none":
        wrong.append(
            f"grpo.scale_rewards: none (got {scale_rewards!r}; GPG does not divide by the group std)"
        )
    if delta is not None:  # both GPGs train without ratio clipping; TRL's delta would still clamp the ratio
        wrong.append(f"grpo.delta unset (got {delta!r}; GPG does not clip the ratio, and delta clamps it)")
    if not wrong:
        return None
    return f"gpg: {'release' if gpg == 'release' else 'true'} needs " + "; ".join(wrong)


def _set_path(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        nxt = cur.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
        cur = nxt
    cur[keys[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        _set_path(raw, key.strip(), parsed)
    return raw


def config_from_dict(raw: dict[str, Any], where: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where, TrainConfig)) from None


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; every failure is one ``ConfigError`` naming the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return raw


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply ``--set`` overrides."""
    if path is None:
        return config_from_dict(apply_overrides({}, overrides), "defaults")
    raw = read_yaml_mapping(Path(path), "config file")
    return config_from_dict(apply_overrides(raw, overrides), str(path))


def dump_config(cfg: TrainConfig, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
