"""What the launcher decides for a run: how many processes, and whether DeepSpeed or FSDP owns the weights.

Precision and several refusals depend on it (DeepSpeed keeps fp32 master weights of its own; FSDP1 cannot
flatten frozen and trainable parameters together), yet the run config does not say it: ``accelerate launch``
does, through environment variables in every process it starts. ``anatomy-r1 check`` has no such process,
so it reads the same facts from the accelerate config file the real run will be launched with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anatomy_r1.training.config import TrainConfig


def _true(value: Any) -> bool:
    """A launch flag: ``"true"`` / ``"false"`` as ``accelerate launch`` exports them, or a YAML boolean.

    Not accelerate's ``str_to_bool``: importing accelerate pulls in torch, which the refusals made before a
    run must not, and it takes only strings and raises on a value it does not know, where a flag that is not
    plainly true is read as false here.
    """
    return str(value).strip().lower() in ("1", "true", "yes", "y", "on")


@dataclass(frozen=True)
class LaunchSetup:
    """The parts of a launch that change what a run does."""

    num_processes: int = 1
    deepspeed: bool = False
    zero_stage: int | None = None
    fsdp_version: int | None = None
    """None without FSDP; 1 or 2 with it."""
    fsdp_use_orig_params: bool = False
    source: str = "a single process"
    """Where the facts came from, for messages."""

    @property
    def sharded_by(self) -> str | None:
        if self.deepspeed:
            return f"DeepSpeed ZeRO-{self.zero_stage}" if self.zero_stage is not None else "DeepSpeed"
        if self.fsdp_version is not None:
            return f"FSDP{self.fsdp_version}"
        return None

    def describe(self) -> str:
        procs = f"{self.num_processes} process{'es' if self.num_processes != 1 else ''}"
        return f"{procs}, {self.sharded_by or 'no sharding'} ({self.source})"

    @classmethod
    def for_run(cls, cfg: TrainConfig, env: Mapping[str, str] | None = None) -> LaunchSetup:
        """The launch a run of ``cfg`` trains under: what the launcher exported, and the ``deepspeed`` /
        ``fsdp`` keys of the section that becomes the run's TrainingArguments, which for SFT is
        ``sft.extra``, not ``grpo:``."""
        return cls.from_env(env, cfg.sft.extra if cfg.method == "sft" else cfg.grpo)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, grpo: Mapping[str, Any] | None = None
    ) -> LaunchSetup:
        """What ``accelerate launch`` (or torchrun) exported to this process; ``grpo`` is the section that
        becomes the run's TrainingArguments (:meth:`for_run` picks it), whose keys ``deepspeed`` / ``fsdp``
        may also ask for them."""
        env = os.environ if env is None else env
        grpo = grpo or {}
        deepspeed = _true(env.get("ACCELERATE_USE_DEEPSPEED", "false")) or bool(grpo.get("deepspeed"))
        stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
        fsdp = _true(env.get("ACCELERATE_USE_FSDP", "false")) or bool(grpo.get("fsdp"))
        fsdp_cfg = grpo.get("fsdp_config") if isinstance(grpo.get("fsdp_config"), dict) else {}
        version = int(env.get("FSDP_VERSION", fsdp_cfg.get("fsdp_version", fsdp_cfg.get("version", 1))))
        orig = env.get("FSDP_USE_ORIG_PARAMS", fsdp_cfg.get("use_orig_params", "false"))
        return cls(
            num_processes=int(env.get("WORLD_SIZE", "1")),
            deepspeed=deepspeed,
            zero_stage=int(stage) if stage and stage.isdigit() else None,
            fsdp_version=version if fsdp else None,
            fsdp_use_orig_params=_true(orig),
            source="this launch" if "WORLD_SIZE" in env or deepspeed or fsdp else "a single process",
        )

    @classmethod
    def from_accelerate_config(cls, path: str | os.PathLike[str]) -> LaunchSetup:
        """The facts an ``accelerate launch --config_file path`` would export, read from the file itself."""
        import json

        from anatomy_r1.training.config import read_yaml_mapping

        p = Path(path)
        raw = read_yaml_mapping(p, "accelerate config file")
        kind = str(raw.get("distributed_type", "NO")).upper()
        procs = int(raw.get("num_processes", 1) or 1) * int(raw.get("num_machines", 1) or 1)
        if kind == "DEEPSPEED":
            ds = raw.get("deepspeed_config") or {}
            stage = ds.get("zero_stage")
            ds_file = ds.get("deepspeed_config_file")
            if stage is None and ds_file:
                ds_path = Path(ds_file)
                if not ds_path.is_absolute() and not ds_path.is_file():
                    ds_path = p.parent / ds_path.name
                try:
                    stage = (
                        json.loads(ds_path.read_text(encoding="utf-8"))
                        .get("zero_optimization", {})
                        .get("stage")
                    )
                except (OSError, ValueError):
                    stage = None
            return cls(procs, True, int(stage) if stage is not None else None, None, False, str(p))
        if kind == "FSDP":
            fs = raw.get("fsdp_config") or {}
            version = int(fs.get("fsdp_version", 1))
            return cls(procs, False, None, version, bool(fs.get("fsdp_use_orig_params", False)), str(p))
        return cls(procs, False, None, None, False, str(p))
