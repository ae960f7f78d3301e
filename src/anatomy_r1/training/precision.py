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
"""

from __future__ import annotations

from dataclasses import dataclass

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


def precision_plan(dtype: str, *, lora: bool, launch: LaunchSetup) -> PrecisionPlan:
    """The plan for ``model.dtype`` under this launch; refuses fp16 with the way out."""
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
        return PrecisionPlan(
            "bf16", True, "fp32 LoRA adapters over the frozen bf16 base (fp32 master under ZeRO)"
        )
    if launch.deepspeed:
        return PrecisionPlan("bf16", True, f"fp32 master weights kept by {launch.sharded_by}")
    return PrecisionPlan("fp32", True, "fp32 parameters (bf16 only inside autocast)")
