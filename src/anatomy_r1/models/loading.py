"""Loading local image-text-to-text checkpoints, with optional LoRA and a dtype choice.

Nothing is fetched: a path that does not exist locally is an error, not a hub lookup.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anatomy_r1.errors import ConfigError


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


def load_processor(path: str | os.PathLike[str]) -> Any:
    """Processor for a local checkpoint; Qwen2/2.5-VL without torchvision get the image-only processor."""
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
    return proc


def load_model(
    path: str | os.PathLike[str],
    *,
    dtype: str = "fp32",
    lora: dict[str, Any] | None = None,
    device_map: str | None = None,
) -> Any:
    """Load a local image-text-to-text model; wrap it in a peft LoRA adapter when ``lora`` is given."""
    from transformers import AutoModelForImageTextToText

    p = Path(path)
    if not (p / "config.json").is_file():
        raise ConfigError(f"{p}: not a local model directory (no config.json); nothing is downloaded")
    model = AutoModelForImageTextToText.from_pretrained(
        p, dtype=_torch_dtype(dtype), local_files_only=True, device_map=device_map
    )
    if lora:
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=int(lora.get("r", 16)),
            lora_alpha=int(lora.get("alpha", 32)),
            lora_dropout=float(lora.get("dropout", 0.05)),
            target_modules=lora.get("target_modules", ["q_proj", "k_proj", "v_proj", "o_proj"]),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, cfg)
    return model


def load_model_and_processor(path: str | os.PathLike[str], **kwargs: Any) -> tuple[Any, Any]:
    return load_model(path, **kwargs), load_processor(path)
