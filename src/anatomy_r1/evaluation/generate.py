"""Batched generation with a local checkpoint: k samples per question for Avg@k, plus a greedy pass.

Image and video placeholder tokens are suppressed: a weakly trained model can sample them, and the
next forward pass then fails because the placeholders no longer match the image features.
"""

from __future__ import annotations

from typing import Any

from anatomy_r1.data.schema import Record


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def generate_with_model(
    model: Any,
    processor: Any,
    records: list[Record],
    *,
    k: int,
    greedy: bool,
    template: str,
    max_new_tokens: int,
    batch_size: int,
    image_root: str | None,
    temperature: float = 1.0,
    seed: int = 0,
    progress: bool = False,
    image_cache_mb: int | None = None,
) -> tuple[dict[str, list[str]], dict[str, str] | None]:
    """Generate for ``records``; ``image_cache_mb`` bounds the decoded frames kept between batches
    (default :data:`~anatomy_r1.data.images.DEFAULT_IMAGE_CACHE_MB`), so memory does not grow with the
    number of distinct frames in the test set."""
    import torch

    from anatomy_r1.data.images import ImageCache
    from anatomy_r1.task.prompts import build_messages

    tok = processor.tokenizer
    tok.padding_side = "left"
    suppress = [
        i
        for i in (
            tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>")
        )
        if isinstance(i, int) and i >= 0 and i != tok.unk_token_id
    ]
    cache = ImageCache.from_mb(image_root, image_cache_mb)
    device = next(model.parameters()).device
    model.eval()
    sampled: dict[str, list[str]] = {r.id: [] for r in records}
    greedy_out: dict[str, str] | None = {} if greedy else None
    torch.manual_seed(seed)
    passes: list[tuple[str, int]] = []
    if k > 0:
        passes.append(("sample", k))
    if greedy:
        passes.append(("greedy", 1))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records) * len(passes), desc="eval", dynamic_ncols=True)
    for kind, n in passes:
        for batch in _batches(records, max(1, batch_size if kind == "greedy" else max(1, batch_size // n))):
            convs = []
            for r in batch:
                msgs = build_messages(r, template)
                imgs = iter([cache.load(p, f"item {r.id!r}") for p in r.images])
                for part in msgs[0]["content"]:
                    if part["type"] == "image":
                        part["image"] = next(imgs)
                convs.append(msgs)
            enc = processor.apply_chat_template(
                convs,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                processor_kwargs={"padding": True},
            ).to(device)
            gen_kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "suppress_tokens": suppress or None,
                "pad_token_id": tok.pad_token_id,
            }
            if kind == "sample":
                gen_kwargs.update(
                    do_sample=True, temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=n
                )
            else:
                gen_kwargs.update(do_sample=False, num_return_sequences=1)
            with torch.no_grad():
                out = model.generate(**enc, **gen_kwargs)
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for j, r in enumerate(batch):
                if kind == "sample":
                    sampled[r.id].extend(texts[j * n : (j + 1) * n])
                else:
                    assert greedy_out is not None
                    greedy_out[r.id] = texts[j]
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    return sampled, greedy_out


def generate_completions(
    model_path: str,
    records: list[Record],
    *,
    k: int,
    greedy: bool,
    template: str,
    max_new_tokens: int,
    batch_size: int,
    image_root: str | None,
    temperature: float = 1.0,
    seed: int = 0,
    dtype: str = "fp32",
    progress: bool = False,
    image_cache_mb: int | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> tuple[dict[str, list[str]], dict[str, str] | None]:
    """Load a local checkpoint and generate; see :func:`generate_with_model`. ``min_pixels``/``max_pixels``
    override the image processor's pixel range (None keeps the one saved with the model)."""
    import torch

    from anatomy_r1.models.loading import load_model, load_processor

    path = model_path
    model = load_model(path, dtype=dtype, device_map="auto" if torch.cuda.is_available() else None)
    processor = load_processor(path, min_pixels=min_pixels, max_pixels=max_pixels)
    return generate_with_model(
        model,
        processor,
        records,
        k=k,
        greedy=greedy,
        template=template,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        image_root=image_root,
        temperature=temperature,
        seed=seed,
        progress=progress,
        image_cache_mb=image_cache_mb,
    )
