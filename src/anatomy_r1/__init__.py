"""anatomy-r1: GRPO for anatomy reasoning in multimodal LLMs, with ASCL and GDQA (arXiv 2512.19512)."""

__version__ = "0.1.0"
