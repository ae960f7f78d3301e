"""Which dtype the weights are loaded in, which dtype the optimizer updates, and which one compute runs in.

``model.dtype`` names the compute precision a user wants. Loading the weights in that dtype as well is only
right where something else keeps fp32 master weights: DeepSpeed's bf16 optimizer does, and peft keeps
LoRA adapters in fp32 over a frozen bf16 base. Without either, AdamW would update bf16 parameters in place,
and at GPU learning rates (1e-6 on weights of scale 0.02, a relative step of 5e-5 against bf16's 4e-3
resolution) most updates round to nothing: the run trains a fraction of what it reports. So full
fine-tuning without DeepSpeed loads fp32 weights and lets autocast run the forward and backward passes in
bf16 (``bf16=True`` in TRL's arguments), the usual mixed-precision recipe.

fp16 is refused for training: nothing here scales the loss, and Qwen2.5-VL's activations overflow fp16's
range; bf16 (or fp32) is the way out. Evaluation may still run in fp16 (``eval --dtype fp16``).

peft upcasts only its adapter layers. ``model.lora`` settings that make base-model weights trainable beside
them (``modules_to_save`` copies, ``bias: all`` / ``lora_only``) leave those in bf16, so with a bf16 base
and no DeepSpeed they are refused (:func:`lora_base_trainables`). Upcasting them instead would not do:
transformers' ``generate`` runs outside autocast, where an fp32 module copy meets bf16 activations. Once
a trainer is built, :func:`check_trainable_dtypes` holds the whole model to the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.training.launch import LaunchSetup


@dataclass(frozen=True)
class PrecisionPlan:
    """How one run's weights are held and computed with."""

    load_dtype: str
    """What ``from_pretrained`` loads (fp32 or bf16)."""
    bf16_autocast: bool
    """TRL/transformers ``bf16=True``: forward and backward under bf16 autocast."""
    master: str
    """The dtype the optimizer updates, and who keeps it."""

    def describe(self) -> str:
        compute = "bf16 autocast" if self.bf16_autocast else "fp32"
        return f"weights loaded in {self.load_dtype}, compute {compute}, optimizer updates {self.master}"


def lora_base_trainables(lora: Mapping[str, Any]) -> list[str]:
    """The ``model.lora`` settings (as written) that train base-model weights beside the adapters."""
    found = []
    if lora.get("modules_to_save"):
        found.append("modules_to_save")
    if lora.get("bias", "none") != "none":
        found.append(f"bias: {lora['bias']}")
    return found


def precision_plan(dtype: str, *, lora: bool | Mapping[str, Any], launch: LaunchSetup) -> PrecisionPlan:
    """The plan for ``model.dtype`` under this launch; refuses fp16, and base weights a bf16 LoRA run would
    train in bf16, with the way out.

    ``lora`` is the ``model.lora`` settings, or only whether there are any (then what they train is not
    checked here, only once the trainer holds the model).
    """
    if dtype == "fp16":
        raise ConfigError(
            "model.dtype: fp16 is refused for training: nothing scales the loss and Qwen2.5-VL overflows "
            "in fp16; use model.dtype: bf16 (fp32 master weights, bf16 autocast) or fp32 "
            "(eval --dtype fp16 is fine)"
        )
    if dtype == "fp32":
        return PrecisionPlan("fp32", False, "fp32 parameters")
    if dtype != "bf16":
        raise ConfigError(f"model.dtype: unknown dtype {dtype!r}; choose fp32 or bf16")
    if lora:
        base = lora_base_trainables(lora) if isinstance(lora, Mapping) else []
        if base and not launch.deepspeed:
            raise ConfigError(
                f"model.lora: {' and '.join(base)} with model.dtype: bf16 and no DeepSpeed: peft keeps only "
                "its adapters in fp32, so those base weights would take bf16 AdamW updates that round away; "
                "leave them out of model.lora, or use model.dtype: fp32 or a DeepSpeed launch"
            )
        return PrecisionPlan(
            "bf16", True, "fp32 LoRA adapters over the frozen bf16 base (fp32 master under ZeRO)"
        )
    if launch.deepspeed:
        return PrecisionPlan("bf16", True, f"fp32 master weights kept by {launch.sharded_by}")
    return PrecisionPlan("fp32", True, "fp32 parameters (bf16 only inside autocast)")


def check_trainable_dtypes(trainer: Any) -> None:
    """Refuse a built trainer whose optimizer would update bf16/fp16 parameters itself (DeepSpeed keeps
    fp32 masters of its own). Whatever made them trainable (a peft setting, a caller's model), their updates
    would mostly round away, and the run would train less than it reports."""
    import torch

    if getattr(trainer, "is_deepspeed_enabled", False):
        return
    half = [
        name
        for name, p in trainer.model.named_parameters()
        if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16)
    ]
    if half:
        shown = ", ".join(half[:3]) + (f" and {len(half) - 3} more" if len(half) > 3 else "")
        raise ConfigError(
            f"{len(half)} trainable parameter(s) are held in 16 bits without DeepSpeed ({shown}): AdamW "
            "would round most of their updates away; train them in fp32 (model.dtype: fp32, or leave "
            "modules_to_save / bias out of model.lora) or under a DeepSpeed launch"
        )
