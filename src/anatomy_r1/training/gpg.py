"""GPG's objective at TRL's seams, as a mixin of the Anatomy-R1 GRPO trainer.

GPG trains with no ratio clipping, no std normalisation, and the policy-gradient loss multiplied by
``alpha = groups / valid_groups`` (valid = non-zero reward spread), as the released Anatomy-R1 trainer does.
This is the smallest faithful change at TRL's seams: every TRL loss is linear in the advantages once
clipping is disabled, so ``alpha`` is applied to the advantages returned by
``_generate_and_score_completions`` (computed from the *gathered* rewards, so every process uses the same
value and multi-process runs work), and both clip bounds are set to :data:`NO_CLIP` after construction.
The KL term is not scaled; GPG runs with ``beta: 0``. ``grpo.scale_rewards: none`` is required, not
implied, and ``grpo.delta`` (TRL's upper clamp of the ratio, applied whatever the clip bounds) is refused, so
a config can never silently disagree with the method it names
(:func:`~anatomy_r1.training.config.gpg_refusal`, the one place that says so: when the config is read, and
again when a GPG trainer is built, since a caller may hand the factory a GPG class for any config).
"""

from __future__ import annotations

from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.task.groups import gpg_alpha
from anatomy_r1.training.batch_rows import batch_group_valid
from anatomy_r1.training.config import gpg_refusal
from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

#: Clip bound standing for "no clipping": the ratio never leaves ``[1 - 1e9, 1 + 1e9]``.
NO_CLIP = 1e9


class GPGMixin:
    """GPG at TRL's seams: clipping off, advantages scaled by ``groups / valid_groups``."""

    _last_total_rewards: list[float]  # the gathered totals of the latest reward call, kept by the trainer
    _batch_group_valid: list[bool] | None = None
    """Set by dynamic sampling (training.dapo) for a batch it re-assembled, whose groups alpha then counts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        refusal = gpg_refusal(
            True,
            dynamic_sampling=False,
            scale_rewards=self.scale_rewards,  # type: ignore[attr-defined]
            loss_type=self.loss_type,  # type: ignore[attr-defined]
            delta=self.args.delta,  # type: ignore[attr-defined]
        )
        if refusal:
            raise ConfigError(refusal)
        if self.loss_type in ("cispo", "sapo", "vespo"):  # type: ignore[attr-defined]
            raise ConfigError(f"gpg works with a clipped-ratio loss type, not {self.loss_type!r}")  # type: ignore[attr-defined]
        self.epsilon_low = NO_CLIP
        self.epsilon_high = NO_CLIP

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        if not self.model.training:  # type: ignore[attr-defined]
            return out
        g = self.num_generations  # type: ignore[attr-defined]
        alpha = gpg_alpha(batch_group_valid(self._last_total_rewards, g, self._batch_group_valid))
        out["advantages"] = out["advantages"] * alpha
        self._metrics["train"]["gpg/alpha"].append(alpha)  # type: ignore[attr-defined]
        return out


class GPGTrainer(GPGMixin, AnatomyR1GRPOTrainer):
    """Anatomy-R1 trainer with the GPG objective."""
