"""Generation with vLLM for ``anatomy-r1 eval --engine vllm``: the same prompts, samples and outputs.

vLLM is an optional dependency (``pip install 'anatomy-r1[vllm]'``). Nothing here imports it at module
level, so this module always imports; :func:`require_vllm` is the one guard, and it turns a missing
vLLM into a ``ConfigError`` (exit status 2) before any model or data is loaded.

Prompts are rendered with the model's own chat template from the same messages the HF engine builds
(:func:`anatomy_r1.task.prompts.build_messages`), and the result has the HF engine's shape
(``{id: [k sampled completions]}`` and ``{id: greedy completion}``), so scoring and the written
``items.jsonl`` / ``metrics.json`` are shared unchanged. Records go to vLLM in chunks of
``chunk_size``: vLLM batches within a chunk, and only one chunk's images are decoded at a time.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError

__all__ = ["INSTALL_HINT", "generate_with_vllm", "require_vllm", "vllm_available"]

INSTALL_HINT = "pip install 'anatomy-r1[vllm]'"
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def vllm_available() -> bool:
    """Whether vLLM can be imported, without importing it (which starts CUDA initialisation)."""
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> Any:
    """The ``vllm`` module, or a ``ConfigError`` saying how to install it."""
    if not vllm_available():
        raise ConfigError(f"--engine vllm needs vLLM, which is not installed; install it with {INSTALL_HINT}")
    try:
        return importlib.import_module("vllm")
    except ImportError as e:  # installed but broken (e.g. built for another torch)
        raise ConfigError(f"--engine vllm: vLLM is installed but cannot be imported ({e})") from None


def check_vllm_model(model_path: str | Path) -> None:
    """vLLM loads full checkpoints only: an adapter folder must be merged into its base model first."""
    p = Path(model_path)
    if (p / "adapter_config.json").is_file() and not (p / "config.json").is_file():
        raise ConfigError(
            f"{p}: holds a LoRA adapter, not a full model; vLLM needs the merged weights "
            "(merge the adapter into its base model, or use --engine hf)"
        )
    if not (p / "config.json").is_file():
        raise ConfigError(f"{p}: not a local model directory (no config.json); nothing is downloaded")


def generate_with_vllm(
    model_path: str,
    records: list[Record],
    *,
    k: int,
    greedy: bool,
    template: str,
    max_new_tokens: int,
    image_root: str | None,
    temperature: float = 1.0,
    seed: int = 0,
    dtype: str = "bf16",
    progress: bool = False,
    engine_args: Mapping[str, Any] | None = None,
    chunk_size: int = 256,
) -> tuple[dict[str, list[str]], dict[str, str] | None]:
    """``k`` sampled completions per record (and one greedy one) from vLLM; see the module docstring.

    ``engine_args`` go to ``vllm.LLM`` unchanged (``tensor_parallel_size``, ``max_model_len``,
    ``gpu_memory_utilization``, ``mm_processor_kwargs``, ...), after the ones set here.
    """
    vllm = require_vllm()
    check_vllm_model(model_path)
    from anatomy_r1.data.images import ImageCache
    from anatomy_r1.models.loading import load_processor
    from anatomy_r1.task.prompts import build_messages

    processor = load_processor(model_path)
    max_images = max((len(r.images) for r in records), default=1)
    llm_kwargs: dict[str, Any] = {
        "model": str(model_path),
        "dtype": _DTYPES[dtype],
        "seed": seed,
        "limit_mm_per_prompt": {"image": max(1, max_images)},
    }
    llm_kwargs.update(engine_args or {})
    llm = vllm.LLM(**llm_kwargs)
    passes: list[tuple[str, Any]] = []
    # top_p 1 and top_k 0 (off) sample from the full distribution, as the HF engine and TRL's rollouts do.
    if k > 0:
        params = vllm.SamplingParams(
            n=k, temperature=temperature, top_p=1.0, top_k=0, max_tokens=max_new_tokens, seed=seed
        )
        passes.append(("sample", params))
    if greedy:
        passes.append(("greedy", vllm.SamplingParams(n=1, temperature=0.0, max_tokens=max_new_tokens)))
    cache = ImageCache(image_root)
    sampled: dict[str, list[str]] = {r.id: [] for r in records}
    greedy_out: dict[str, str] | None = {} if greedy else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records) * len(passes), desc="eval (vllm)", dynamic_ncols=True)
    for start in range(0, len(records), chunk_size):
        chunk = records[start : start + chunk_size]
        requests = []
        for r in chunk:
            text = processor.apply_chat_template(
                build_messages(r, template), add_generation_prompt=True, tokenize=False
            )
            req: dict[str, Any] = {"prompt": text}
            if r.images:
                images = [cache.load(p, f"item {r.id!r}") for p in r.images]
                req["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
            requests.append(req)
        for kind, params in passes:
            outputs = llm.generate(requests, sampling_params=params, use_tqdm=False)
            if len(outputs) != len(chunk):
                raise RuntimeError(f"vLLM returned {len(outputs)} results for {len(chunk)} prompts")
            for r, out in zip(chunk, outputs, strict=True):
                texts = [o.text for o in out.outputs]
                if kind == "sample":
                    sampled[r.id].extend(texts)
                else:
                    assert greedy_out is not None
                    greedy_out[r.id] = texts[0]
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return sampled, greedy_out
