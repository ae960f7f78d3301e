"""GPG as the paper authors' released trainer runs it (``gpg: release``), beside the paper's GPG (``gpg``).

What the release's trainer (a GPG-modified ms-swift 3.3 GRPO trainer) does, read from its code; each
point is a setting here, checked when the trainer is built, so a config cannot say one thing and train
another:

* **Dynamic sampling, always.** Its α is computed only inside its dynamic-sampling step, so every run of it
  resampled: up to three rounds, each a whole fresh batch; when the valid groups collected fill a batch
  they replace it, otherwise the first batch is kept as generated (``dynamic_sampling: true`` here runs
  :class:`~anatomy_r1.training.dapo.DynamicSamplingMixin` with ``whole_batch``). The release generates a
  last round it never scores; every round rolled out here is scored.
* **Std-normalised advantages** (ms-swift's default ``scale_rewards``): ``grpo.scale_rewards: group``.
* **Token-level loss over the micro-batch**: ``grpo.loss_type: bnpo``.
* **No ratio clipping** (``grpo.delta`` left unset), the KL term kept (``grpo.beta`` as configured).
* **α = groups / groups with a reward spread, counted on the batch actually trained** (after dynamic
  sampling, so α is 1 whenever resampling filled the batch), and it scales the **whole loss**, KL term
  included, not only the advantages.
* **Every group tied**: the release divides by a count of 0 (plus 1e-8), a loss scaled by 1e8 with the KL
  term still in it. Here α is 1 in that case (nothing to re-weight: every advantage is 0) and the step
  logs ``gpg/all_groups_tied``.
"""

from __future__ import annotations

from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.task.groups import gpg_alpha
from anatomy_r1.training.batch_rows import batch_group_valid
from anatomy_r1.training.config import gpg_refusal
from anatomy_r1.training.dapo import DynamicSamplingMixin
from anatomy_r1.training.gpg import NO_CLIP
from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

#: Key of the per-row loss scale this trainer adds to a generation batch (one value, repeated per row, so
#: TRL's split into micro-batches and the dynamic-sampling re-assembly carry it like any column).
LOSS_SCALE = "gpg_loss_scale"


class ReleaseGPGMixin:
    """The release's GPG at TRL's seams: clipping off, α on the trained batch scaling the whole loss."""

    _last_total_rewards: list[float]
    _batch_group_valid: list[bool] | None
    whole_batch = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        refusal = gpg_refusal(
            "release",
            dynamic_sampling=True,  # this class samples dynamically whatever the config says
            scale_rewards=self.scale_rewards,  # type: ignore[attr-defined]
            loss_type=self.loss_type,  # type: ignore[attr-defined]
            delta=self.args.delta,  # type: ignore[attr-defined]
        )
        if refusal:
            raise ConfigError(refusal)
        self.epsilon_low = NO_CLIP
        self.epsilon_high = NO_CLIP

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        out = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        if not self.model.training:  # type: ignore[attr-defined]
            return out
        g = self.num_generations  # type: ignore[attr-defined]
        valid = batch_group_valid(self._last_total_rewards, g, self._batch_group_valid)
        alpha = gpg_alpha(valid)
        m = self._metrics["train"]  # type: ignore[attr-defined]
        m["gpg/alpha"].append(alpha)
        m["gpg/all_groups_tied"].append(float(not any(valid)))
        n = len(out["advantages"])
        out[LOSS_SCALE] = torch.full((n,), alpha, dtype=torch.float32, device=out["advantages"].device)
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        scale = inputs.get(LOSS_SCALE)
        return loss if scale is None else loss * scale[0]


class ReleaseGPGTrainer(ReleaseGPGMixin, DynamicSamplingMixin, AnatomyR1GRPOTrainer):
    """Anatomy-R1 trainer with the release's GPG (whole-batch dynamic sampling, α scaling the loss)."""
