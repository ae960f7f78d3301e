"""Baselines the paper compares against, as small subclasses of the Anatomy-R1 GRPO trainer.

Every method then shares one code path (data, prompts, rewards, curriculum and GDQA seams, metrics), so a
table row differs from another only in what the method itself changes.

* **Dr.GRPO** needs no code: ``grpo.loss_type: dr_grpo`` and ``grpo.scale_rewards: none``.
* **DAPO** is mostly configuration (``grpo.loss_type: dapo`` for the token-level loss,
  ``grpo.epsilon_high`` for clip-higher) plus *dynamic sampling*, which TRL does not have:
  :class:`DynamicSamplingMixin` overrides ``_generate_and_score_completions``. After TRL has generated and
  scored the generation batch, groups whose rewards are all equal (zero advantage, no gradient) are
  dropped and their slots refilled with groups rolled out for fresh prompts drawn from the train dataset
  with a seeded RNG (each prompt repeated ``num_generations`` times). Only groups with a non-zero reward
  spread are kept from the refill rounds. Refill prompts are drawn uniformly from the whole train set
  (DAPO has no curriculum; combined with ASCL the refills would ignore its pacing). After
  ``max_refill_rounds`` rounds the batch keeps what it has: slots still unfilled keep their original
  zero-std group, whose advantages are zero, so the batch shape (and TRL's split into
  ``steps_per_generation`` micro-batches) never changes. Logged per generation batch:
  ``dapo/dropped_groups``, ``dapo/refill_rounds``, ``dapo/refilled_groups``,
  ``dapo/remaining_zero_std_groups`` and ``dapo/extra_rollouts``. Dynamic sampling is **single-process
  only**: merging rollouts from several generation calls would move rows between processes, so
  ``num_processes > 1`` raises a ``ConfigError`` at construction.
* **GPG** (:class:`GPGMixin`): no ratio clipping, no std normalisation, and the policy-gradient loss
  multiplied by ``alpha = groups / valid_groups`` (valid = non-zero reward spread), as the released
  Anatomy-R1 trainer does. The smallest faithful change at TRL's seams: every TRL loss is linear in the
  advantages once clipping is disabled, so ``alpha`` is applied to the advantages returned by
  ``_generate_and_score_completions`` (computed from the *gathered* rewards, so every process uses the same
  value and multi-process runs work), and both clip bounds are set to ``1e9`` after construction. The KL
  term is not scaled; GPG runs with ``beta: 0``. ``grpo.scale_rewards: none`` is required, not implied,
  so a config can never silently disagree with the method it names.
"""

from __future__ import annotations

import random
from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.task.groups import gpg_alpha, group_valid_mask, total_rewards
from anatomy_r1.training.config import TrainConfig
from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

#: Clip bound standing for "no clipping": the ratio never leaves ``[1 - 1e9, 1 + 1e9]``.
NO_CLIP = 1e9
# Keys of TRL's generation output by how their second dimension is padded.
_LEFT_PADDED = {"prompt_ids": "pad", "prompt_mask": 0}
_RIGHT_PADDED = {
    "completion_ids": "pad",
    "completion_mask": 0,
    "old_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "tool_mask": 1,
    "importance_sampling_ratio": 1.0,
}
_PROMPT_AND_COMPLETION = ("token_type_ids", "mm_token_type_ids")


class _GroupRewardsMixin:
    """Keeps the gathered total reward per completion of the latest ``_calculate_rewards`` call."""

    _last_total_rewards: list[float]

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards_per_func = super()._calculate_rewards(  # type: ignore[misc]
            inputs, prompts, completions, completion_ids_list
        )
        self._last_total_rewards = total_rewards(
            rewards_per_func.tolist(),
            self.reward_weights.tolist(),  # type: ignore[attr-defined]
        )
        return rewards_per_func

    def _current_group_valid(self) -> list[bool]:
        """Validity of the groups in the batch being returned (overridden once the batch is re-assembled)."""
        return group_valid_mask(self._last_total_rewards, self.num_generations)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- DAPO
def _pad_width(t: Any, width: int, value: float | int, side: str) -> Any:
    import torch

    extra = width - t.shape[1]
    if extra <= 0:
        return t
    pad = torch.full((t.shape[0], extra, *t.shape[2:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if side == "left" else [t, pad], dim=1)


def _normalise_widths(batches: list[dict[str, Any]], pad_id: int) -> list[dict[str, Any]]:
    """Pad every batch's prompt tensors (left) and completion tensors (right) to common widths."""
    import torch

    p_max = max(b["prompt_ids"].shape[1] for b in batches)
    c_max = max(b["completion_ids"].shape[1] for b in batches)
    out = []
    for b in batches:
        b = dict(b)
        p, c = b["prompt_ids"].shape[1], b["completion_ids"].shape[1]
        for key, value in _LEFT_PADDED.items():
            if b.get(key) is not None:
                b[key] = _pad_width(b[key], p_max, pad_id if value == "pad" else value, "left")
        for key, value in _RIGHT_PADDED.items():
            t = b.get(key)
            if t is not None and t.ndim >= 2 and t.shape[1] == c:
                b[key] = _pad_width(t, c_max, pad_id if value == "pad" else value, "right")
        for key in _PROMPT_AND_COMPLETION:
            t = b.get(key)
            if t is not None and t.ndim == 2 and t.shape[1] == p + c:
                head = _pad_width(t[:, :p], p_max, 0, "left")
                tail = _pad_width(t[:, p:], c_max, 0, "right")
                b[key] = torch.cat([head, tail], dim=1)
        out.append(b)
    return out


def merge_generation_batches(
    batches: list[dict[str, Any]], rows: list[tuple[int, int]], pad_id: int
) -> dict[str, Any]:
    """Assemble one TRL generation batch from rows ``(batch index, row index)`` of several batches.

    Works on TRL's output of ``_generate_and_score_completions``: per-row tensors are re-padded to common
    widths and indexed, per-image tensors are split per row with TRL's own helpers and re-joined, and
    ``num_items_in_batch`` is recomputed from the merged loss mask (single process, so no gather).
    """
    import torch
    from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

    split = [split_pixel_values_by_grid(b) for b in batches]
    split = _normalise_widths(split, pad_id)
    n_rows = [len(b["advantages"]) for b in split]
    merged: dict[str, Any] = {}
    for key in split[0]:
        vals = [b[key] for b in split]
        if key == "num_items_in_batch" or vals[0] is None:
            continue
        if isinstance(vals[0], torch.Tensor) and vals[0].ndim >= 1 and vals[0].shape[0] == n_rows[0]:
            merged[key] = torch.stack([vals[i][j] for i, j in rows])
        elif isinstance(vals[0], list) and len(vals[0]) == n_rows[0]:
            merged[key] = [vals[i][j] for i, j in rows]
        else:
            merged[key] = vals[0]
    loss_mask = merged["completion_mask"]
    if merged.get("tool_mask") is not None:
        loss_mask = loss_mask * merged["tool_mask"]
    merged["num_items_in_batch"] = loss_mask.sum().to(batches[0]["num_items_in_batch"].dtype)
    return unsplit_pixel_values_by_grid(merged)


class DynamicSamplingMixin(_GroupRewardsMixin):
    """DAPO's dynamic sampling at TRL's rollout seam; see the module docstring."""

    max_refill_rounds: int = 3
    """Refill rounds per generation batch before keeping the zero-std groups that are left."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.accelerator.num_processes > 1:  # type: ignore[attr-defined]
            raise ConfigError(
                "dynamic_sampling (DAPO) is single-process only: refilled groups cannot be moved between "
                "processes; run it on one process or turn dynamic_sampling off"
            )
        self._batch_group_valid: list[bool] | None = None

    def _refill_inputs(self, n_groups: int, round_idx: int) -> list[dict[str, Any]]:
        """Fresh prompts for ``n_groups`` groups, reproducible from the seed, step and round."""
        ds = self.train_dataset  # type: ignore[attr-defined]
        g = self.num_generations  # type: ignore[attr-defined]
        seed = self.args.seed  # type: ignore[attr-defined]
        rng = random.Random(f"dapo-refill:{seed}:{self.state.global_step}:{round_idx}")  # type: ignore[attr-defined]
        picks = [rng.randrange(len(ds)) for _ in range(n_groups)]
        rows = []
        for idx in picks:
            item = ds[idx]
            rows.extend(dict(item) for _ in range(g))
        return rows

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._batch_group_valid = None
        first = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        if not self.model.training:  # type: ignore[attr-defined]
            return first
        g = self.num_generations  # type: ignore[attr-defined]
        valid = group_valid_mask(self._last_total_rewards, g)
        dropped = [k for k, ok in enumerate(valid) if not ok]
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        batches = [first]
        slots: dict[int, tuple[int, int]] = {}  # dropped group -> (batch, group) replacing it
        rounds = extra = 0
        while len(slots) < len(dropped) and rounds < self.max_refill_rounds:
            rounds += 1
            need = len(dropped) - len(slots)
            refill = super()._generate_and_score_completions(  # type: ignore[misc]
                self._refill_inputs(need, rounds)
            )
            extra += need * g
            batches.append(refill)
            open_slots = [k for k in dropped if k not in slots]
            good = [j for j, ok in enumerate(group_valid_mask(self._last_total_rewards, g)) if ok]
            for slot, j in zip(open_slots, good, strict=False):
                slots[slot] = (len(batches) - 1, j)
        metrics["dapo/dropped_groups"].append(float(len(dropped)))
        metrics["dapo/refill_rounds"].append(float(rounds))
        metrics["dapo/refilled_groups"].append(float(len(slots)))
        metrics["dapo/remaining_zero_std_groups"].append(float(len(dropped) - len(slots)))
        metrics["dapo/extra_rollouts"].append(float(extra))
        self._batch_group_valid = [ok or k in slots for k, ok in enumerate(valid)]
        if not slots:
            return first
        rows = []
        for k in range(len(valid)):
            b, grp = slots.get(k, (0, k))
            rows.extend((b, grp * g + m) for m in range(g))
        pad_id = self._tokenizer.pad_token_id  # type: ignore[attr-defined]
        return merge_generation_batches(batches, rows, pad_id)

    def _current_group_valid(self) -> list[bool]:
        if self._batch_group_valid is not None:
            return self._batch_group_valid
        return super()._current_group_valid()


# ----------------------------------------------------------------------------------------------- GPG
class GPGMixin(_GroupRewardsMixin):
    """GPG at TRL's seams: clipping off, advantages scaled by ``groups / valid_groups``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.scale_rewards != "none":  # type: ignore[attr-defined]
            raise ConfigError("gpg needs grpo.scale_rewards: none (GPG does not divide by the group std)")
        if self.loss_type in ("cispo", "sapo", "vespo"):  # type: ignore[attr-defined]
            raise ConfigError(f"gpg works with a clipped-ratio loss type, not {self.loss_type!r}")  # type: ignore[attr-defined]
        self.epsilon_low = NO_CLIP
        self.epsilon_high = NO_CLIP

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        if not self.model.training:  # type: ignore[attr-defined]
            return out
        alpha = gpg_alpha(self._current_group_valid())
        out["advantages"] = out["advantages"] * alpha
        self._metrics["train"]["gpg/alpha"].append(alpha)  # type: ignore[attr-defined]
        return out


class DAPOTrainer(DynamicSamplingMixin, AnatomyR1GRPOTrainer):
    """Anatomy-R1 trainer with DAPO dynamic sampling (clip-higher and token loss come from the config)."""


class GPGTrainer(GPGMixin, AnatomyR1GRPOTrainer):
    """Anatomy-R1 trainer with the GPG objective."""


class DAPOGPGTrainer(GPGMixin, DynamicSamplingMixin, AnatomyR1GRPOTrainer):
    """Both: GPG scales the advantages of the batch dynamic sampling assembled (alpha is then ~1)."""


def trainer_class_for(cfg: TrainConfig) -> type:
    """The trainer class a config asks for; checks the combinations the method definitions require."""
    if cfg.method != "grpo":
        raise ConfigError(f"trainer_class_for: method {cfg.method!r} is not trained with a GRPO trainer")
    if cfg.gpg and cfg.grpo_setting("scale_rewards") != "none":
        raise ConfigError("gpg: true needs grpo.scale_rewards: none (GPG does not divide by the group std)")
    if cfg.gpg and cfg.dynamic_sampling:
        return DAPOGPGTrainer
    if cfg.gpg:
        return GPGTrainer
    if cfg.dynamic_sampling:
        return DAPOTrainer
    return AnatomyR1GRPOTrainer
