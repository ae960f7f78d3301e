"""Which trainer a run config asks for: plain GRPO, DAPO's dynamic sampling, GPG, or both.

The baselines the paper compares against are small subclasses of the Anatomy-R1 GRPO trainer, so every
method shares one code path (data, prompts, rewards, curriculum and GDQA seams, metrics) and a table row
differs from another only in what the method itself changes. **Dr.GRPO** needs no code
(``grpo.loss_type: dr_grpo`` and ``grpo.scale_rewards: none``); **DAPO** is
:mod:`anatomy_r1.training.dapo`, **GPG** :mod:`anatomy_r1.training.gpg`. Their combination lives here, the
one module that sees both, so neither method's module depends on the other.
"""

from __future__ import annotations

from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import TrainConfig, gpg_refusal
from anatomy_r1.training.dapo import DAPOTrainer, DynamicSamplingMixin
from anatomy_r1.training.gpg import GPGMixin, GPGTrainer
from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer


class DAPOGPGTrainer(GPGMixin, DynamicSamplingMixin, AnatomyR1GRPOTrainer):
    """Both: GPG scales the advantages of the batch dynamic sampling assembled (alpha is then ~1), counting
    its groups, refilled slots included, as dynamic sampling recorded them."""


def trainer_class_for(cfg: TrainConfig) -> type:
    """The trainer class a config asks for; checks the combinations the method definitions require."""
    if cfg.method != "grpo":
        raise ConfigError(f"trainer_class_for: method {cfg.method!r} is not trained with a GRPO trainer")
    # Checked when the config was read; again here for a config built or changed in code, which pydantic
    # does not validate.
    refusal = gpg_refusal(
        cfg.gpg,
        dynamic_sampling=cfg.dynamic_sampling,
        scale_rewards=cfg.grpo_setting("scale_rewards"),
        loss_type=cfg.grpo_setting("loss_type"),
        delta=cfg.grpo_setting("delta"),
    )
    if refusal:
        raise ConfigError(refusal)
    if cfg.gpg == "release":
        from anatomy_r1.training.gpg_release import ReleaseGPGTrainer

        return ReleaseGPGTrainer
    if cfg.gpg and cfg.dynamic_sampling:
        return DAPOGPGTrainer
    if cfg.gpg:
        return GPGTrainer
    if cfg.dynamic_sampling:
        return DAPOTrainer
    return AnatomyR1GRPOTrainer
