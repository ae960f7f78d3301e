"""An image-only Qwen2.5-VL processor that works without torchvision.

The stock ``Qwen2_5_VLProcessor`` insists on a video processor, and the video processor needs torchvision,
which has no CPU build on PyPI. Image-text training never touches video, so this subclass drops that
attribute and keeps the PIL image backend. It is registered with ``AutoProcessor`` on import, because
``AutoProcessor.from_pretrained`` otherwise silently falls back to returning only the tokenizer.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoProcessor, Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor with the image processor and tokenizer only."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )


_REGISTERED = False


def register() -> None:
    """Make ``AutoProcessor`` resolve the class by name in saved checkpoints (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    try:
        AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)
    except TypeError:  # older signature without exist_ok
        AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor)
    _REGISTERED = True


register()
