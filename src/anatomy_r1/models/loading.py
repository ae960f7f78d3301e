"""Loading local image-text-to-text checkpoints, and the pieces a trainer needs around them.

Nothing is fetched: a path that does not exist locally is an error, not a hub lookup. LoRA is not applied
here: :func:`lora_config` builds the ``peft.LoraConfig`` that TRL's trainers attach themselves
(``peft_config=``), so TRL knows the adapter is new (its reference model is then the base with the adapter
disabled, not a copy) and applies its own ZeRO-3 handling of adapters.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from anatomy_r1.errors import ConfigError

#: Attribute names vision-language models in transformers give their vision tower (Qwen2/2.5-VL:
#: ``model.visual``; LLaVA-style models: ``vision_tower``; Idefics/SmolVLM: ``vision_model``).
VISION_TOWER_NAMES = ("visual", "vision_tower", "vision_model")


def _torch_dtype(name: str):
    import torch

    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if name not in table:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {', '.join(sorted(table))}")
    return table[name]


def set_pixel_budget(processor: Any, min_pixels: int | None, max_pixels: int | None, where: str) -> None:
    """Bound the pixels (and so the image tokens) per image of a Qwen2/2.5-VL image processor.

    Its ``size`` is ``{shortest_edge: min_pixels, longest_edge: max_pixels}``; it is saved with the
    processor, so a model saved after training keeps the budget it was trained with. A bound given alone
    moves the saved other one where they would cross (``max_pixels`` below the saved minimum lowers it).
    """
    if min_pixels is None and max_pixels is None:
        return
    for name, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if v is not None and v < 1:
            raise ConfigError(f"{where}: {name} must be at least 1, got {v}")
    ip = processor.image_processor
    size = getattr(ip, "size", None)
    if getattr(size, "shortest_edge", None) is None or getattr(size, "longest_edge", None) is None:
        raise ConfigError(
            f"{where}: min_pixels/max_pixels need a Qwen2/2.5-VL image processor "
            f"(got {type(ip).__name__} without size.shortest_edge/longest_edge)"
        )
    from transformers.image_utils import SizeDict

    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ConfigError(f"{where}: min_pixels ({min_pixels}) is larger than max_pixels ({max_pixels})")
    # A bound given alone wins over the saved other one where they cross.
    lo = min_pixels if min_pixels is not None else min(size.shortest_edge, max_pixels)
    hi = max_pixels if max_pixels is not None else max(size.longest_edge, lo)
    ip.size = SizeDict(shortest_edge=int(lo), longest_edge=int(hi))


def load_processor(
    path: str | os.PathLike[str], *, min_pixels: int | None = None, max_pixels: int | None = None
) -> Any:
    """Processor for a local checkpoint; Qwen2/2.5-VL without torchvision get the image-only processor.

    ``min_pixels``/``max_pixels`` override the image processor's pixel range (None keeps the saved one).
    """
    from transformers import AutoProcessor, AutoTokenizer

    import anatomy_r1.models.processor  # noqa: F401  (registers the image-only class)

    p = Path(path)
    try:
        proc = AutoProcessor.from_pretrained(p, local_files_only=True)
    except (ImportError, OSError, ValueError) as e:
        # Real Qwen checkpoints name Qwen2_5_VLProcessor, whose video half needs torchvision.
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        from anatomy_r1.models.processor import ImageOnlyQwen2_5_VLProcessor

        try:
            tok = AutoTokenizer.from_pretrained(p, local_files_only=True)
            ip = Qwen2VLImageProcessorPil.from_pretrained(p, local_files_only=True)
        except Exception:
            raise ConfigError(f"{p}: cannot load a processor ({e})") from None
        proc = ImageOnlyQwen2_5_VLProcessor(
            image_processor=ip, tokenizer=tok, chat_template=tok.chat_template
        )
    if not hasattr(proc, "image_processor"):
        raise ConfigError(f"{p}: the checkpoint has no image processor (got {type(proc).__name__})")
    set_pixel_budget(proc, min_pixels, max_pixels, str(p))
    return proc


def _adapter_base(p: Path) -> Path | None:
    """The local base model of a saved LoRA adapter folder (TRL saves only the adapter), else None."""
    cfg_file = p / "adapter_config.json"
    if (p / "config.json").is_file() or not cfg_file.is_file():
        return None
    base = json.loads(cfg_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").is_file():
        raise ConfigError(
            f"{p}: a LoRA adapter whose base model {base!r} is not a local model directory; "
            "nothing is downloaded"
        )
    return Path(base)


def load_model(
    path: str | os.PathLike[str],
    *,
    dtype: str = "fp32",
    device_map: str | None = None,
    attn_implementation: str | None = None,
    freeze_vision: bool = False,
) -> Any:
    """Load a local image-text-to-text model.

    A folder holding a trained LoRA adapter (``adapter_config.json`` and no ``config.json``) loads its base
    model and merges the adapter into it, so evaluating a LoRA run needs nothing special.
    """
    from transformers import AutoModelForImageTextToText

    p = Path(path)
    base = _adapter_base(p)
    if base is None and not (p / "config.json").is_file():
        raise ConfigError(f"{p}: not a local model directory (no config.json); nothing is downloaded")
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype), "local_files_only": True}
    kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(base or p, **kwargs)
    except (ImportError, ValueError) as e:  # e.g. flash_attention_2 without the flash-attn package
        raise ConfigError(f"{p}: cannot load the model ({e})") from None
    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, p, local_files_only=True).merge_and_unload()
    if freeze_vision:
        freeze_vision_tower(model)
    return model


def vision_tower_name(model: Any) -> str:
    """Qualified module name of the model's vision tower (``model.visual`` for Qwen2.5-VL)."""
    found = [
        name for name, _ in model.named_modules() if name and name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES
    ]
    if not found:
        raise ConfigError(
            f"model.freeze_vision: {type(model).__name__} has no vision tower named "
            f"{' / '.join(VISION_TOWER_NAMES)}"
        )
    return min(found, key=lambda n: n.count("."))


def freeze_vision_tower(model: Any) -> str:
    """Stop gradients into the vision tower; returns its module name. Trainers only optimise parameters
    that require a gradient, so a frozen tower is neither updated nor given optimizer state."""
    name = vision_tower_name(model)
    for param in model.get_submodule(name).parameters():
        param.requires_grad_(False)
    return name


def _exclude_pattern(user: list[str] | str | None, module: str) -> str:
    """One regex for peft's ``exclude_modules`` (full match on module names) that keeps adapters off
    ``module`` and everything under it, and off whatever the user excluded already."""
    parts = [rf"{re.escape(module)}(?:\..*)?"]
    if isinstance(user, str):
        parts.append(user)
    elif user:
        # peft's list form: a name matches when it equals an entry or ends with "." + entry.
        parts += [rf"(?:.*\.)?{re.escape(u)}" for u in user]
    return "|".join(f"(?:{x})" for x in parts)


def lora_config(settings: dict[str, Any], *, exclude_module: str | None = None) -> Any:
    """``peft.LoraConfig`` from ``model.lora``; ``exclude_module`` (the vision tower) gets no adapter."""
    from peft import LoraConfig

    kwargs = dict(settings)
    if exclude_module is not None:
        kwargs["exclude_modules"] = _exclude_pattern(kwargs.get("exclude_modules"), exclude_module)
    try:
        return LoraConfig(task_type="CAUSAL_LM", **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.lora rejected by peft: {e}") from None


def load_model_and_processor(path: str | os.PathLike[str], **kwargs: Any) -> tuple[Any, Any]:
    return load_model(path, **kwargs), load_processor(path)
