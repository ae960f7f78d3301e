"""Rollouts that carry each group member's own prompt, whichever engine TRL generates with.

GDQA gives the members of one GRPO group different wordings of a question. Two of TRL's generation paths
assume the opposite:

* **vLLM server mode** (``VLLMGeneration.generate``) keeps only every ``num_generations``-th prompt of the
  gathered batch and asks the server for ``n = num_generations`` completions of it. With GDQA every
  member's completion would then be sampled from member 0's wording, scored against member k's options,
  and its log-probability taken under a prompt it was not drawn from. With GDQA on,
  :meth:`PerMemberRolloutsMixin._generate_single_turn` looks at the gathered prompt ids of the batch
  (without it every group shares one prompt and nothing is gathered); when any group's members differ,
  the whole call goes out with ``num_generations=1``, one request per member, which TRL's server branch
  supports as it is (its tool loop uses it). DAPO's refill rounds pass through the same method. Groups that
  do share a prompt keep the single ``n``-sample request.
* **Image sizes under vLLM.** Our prompt ids hold one image-token run per frame sized by the trainer's
  processor (``model.min_pixels``/``max_pixels``). vLLM sizes frames with the processor of the model
  folder unless told otherwise. In colocate mode the budget is handed to ``vllm.LLM`` as
  ``mm_processor_kwargs`` while TRL builds it (:func:`vllm_pixel_budget`); in server mode the server's
  processor is outside the trainer, so its image sizes are compared with our runs on every call
  (:func:`guard_server_image_tokens`) and a mismatch stops the run with the way out.

Colocate mode and transformers' ``generate`` already generate one completion per row; the stand-in
tests prove it stays so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from anatomy_r1.errors import ConfigError

#: Logged per generation call: 1.0 when its groups needed one request per member.
PER_MEMBER_METRIC = "rollouts/per_member_requests"


def groups_share_prompts(prompt_ids: Sequence[Sequence[int]], group_size: int) -> bool:
    """Whether every group of ``group_size`` consecutive rows (TRL's layout) has one prompt."""
    rows = [tuple(int(t) for t in ids) for ids in prompt_ids]
    return all(len(set(rows[k : k + group_size])) == 1 for k in range(0, len(rows), group_size))


def image_token_runs(prompt_ids: Sequence[int], image_token_id: int) -> list[int]:
    """Lengths of the runs of image tokens in one prompt: the tokens each frame was given."""
    runs: list[int] = []
    length = 0
    for tok in prompt_ids:
        if int(tok) == image_token_id:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    if length:
        runs.append(length)
    return runs


def pixel_budget(processor: Any) -> dict[str, int]:
    """``{"min_pixels", "max_pixels"}`` of a Qwen2/2.5-VL processor, as vLLM's ``mm_processor_kwargs``."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    lo, hi = getattr(size, "shortest_edge", None), getattr(size, "longest_edge", None)
    if lo is None or hi is None:
        return {}
    return {"min_pixels": int(lo), "max_pixels": int(hi)}


@contextlib.contextmanager
def vllm_pixel_budget(args: Any, processor: Any) -> Iterator[None]:
    """While TRL builds its colocated ``vllm.LLM``, pass it our processor's pixel range.

    TRL constructs the engine inside ``GRPOTrainer.__init__`` with a fixed argument list; vLLM reads the
    image processor's size from the model folder unless ``mm_processor_kwargs`` says otherwise. The
    engine class is swapped only for the duration of the constructor and only in TRL's generation module.
    """
    budget = pixel_budget(processor)
    if not (getattr(args, "use_vllm", False) and args.vllm_mode == "colocate" and budget):
        yield
        return
    import trl.generation.vllm_generation as vg

    engine = getattr(vg, "LLM", None)
    if engine is None:  # vLLM is absent: TRL raises its own ImportError
        yield
        return

    def with_budget(*a: Any, **kw: Any) -> Any:
        kw.setdefault("mm_processor_kwargs", dict(budget))
        return engine(*a, **kw)

    vg.LLM = with_budget
    try:
        yield
    finally:
        vg.LLM = engine


def guard_server_image_tokens(generation: Any, image_token_id: int, budget: dict[str, int]) -> None:
    """Make ``VLLMGeneration._place_features`` refuse server image features sized unlike our prompt.

    TRL overwrites the server's placeholder positions with the runs in our prompt ids, so a frame the
    server turned into a different number of tokens would reach the engine unnoticed.
    """
    place = generation._place_features

    def checked(features: dict[str, Any] | None, prompt_ids: list[int]) -> dict[str, Any] | None:
        if features is not None:
            server = [int(p["length"]) for p in features["mm_placeholders"]["image"]]
            ours = image_token_runs(prompt_ids, image_token_id)
            if len(server) == len(ours) and server != ours:
                lo, hi = budget.get("min_pixels"), budget.get("max_pixels")
                raise ConfigError(
                    f"vLLM server sized a frame as {server} image tokens but the trainer's prompt has {ours} "
                    f"(trainer pixel range {lo}..{hi}); start the server with the same range "
                    f"(trl vllm-serve ... --mm-processor-kwargs "
                    f'\'{{"min_pixels": {lo}, "max_pixels": {hi}}}\') '
                    "or set model.min_pixels/max_pixels to the server's"
                )
        return place(features, prompt_ids)

    generation._place_features = checked


class PerMemberRolloutsMixin:
    """TRL's generation seam, asking for one completion per member whenever a group's prompts differ."""

    _policy: Any
    """GDQA's group policy (set by the trainer), None without GDQA."""

    def _generate_single_turn(  # type: ignore[no-untyped-def]
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        n = num_generations
        # Only GDQA gives a group's members different prompts; without it TRL's path is right as it is, and
        # gathering every row's prompt on every call would buy nothing.
        if self._policy is None:
            return super()._generate_single_turn(  # type: ignore[misc]
                prompt_ids, images, multimodal_fields, n, has_tool_images
            )
        if getattr(self, "use_vllm", False) and self.vllm_mode == "server" and n > 1:  # type: ignore[attr-defined]
            from accelerate.utils import gather_object

            # Every process takes part in the gather and so reaches the same decision: TRL's server branch
            # slices the gathered batch by ``num_generations`` on every process.
            gathered = gather_object([list(ids) for ids in prompt_ids])
            split = not groups_share_prompts(gathered, n)
            mode = "train" if self.model.training else "eval"  # type: ignore[attr-defined]
            self._metrics[mode][PER_MEMBER_METRIC].append(float(split))  # type: ignore[attr-defined]
            if split:
                n = 1
        return super()._generate_single_turn(  # type: ignore[misc]
            prompt_ids, images, multimodal_fields, n, has_tool_images
        )

    def _install_rollout_guards(self) -> None:
        """After TRL built its vLLM backend: the server-side image-size check (main process only holds
        the client, and only it places features)."""
        gen = getattr(self, "vllm_generation", None)
        if gen is None or gen.mode != "server":
            return
        proc = self.processing_class  # type: ignore[attr-defined]
        guard_server_image_tokens(gen, proc.image_token_id, pixel_budget(proc))
