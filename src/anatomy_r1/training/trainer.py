"""The Anatomy-R1 GRPO trainer: TRL's ``GRPOTrainer``, extended at its documented seams for ASCL and GDQA.

* ``_get_train_sampler`` returns the curriculum sampler (ASCL) instead of TRL's shuffled ``RepeatSampler``;
  it keeps TRL's layout (each index repeated ``num_generations`` times in a row, same order in every
  process) so groups and sharding are untouched.
* ``_generate_and_score_completions`` asks the GDQA policy
  (:class:`anatomy_r1.augment.group_policy.GroupPolicy`) which wording each group member sees and
  rewrites those rows. Members are identified by their global position in the generation batch, so a
  group that spans processes is assigned consistently; advantages are still normalised over the whole
  group by TRL.
* ``_calculate_rewards`` tells the policy each gathered group's accuracy (unless its difficulty rule,
  ``s_q``, reads none) and logs the invalid-gradient
  ratio per anatomy class, the augmented fraction (groups reworded at rollout), the variant-row fraction
  (groups whose question is a variant row ``gdqa.placement: own_groups`` added to the data; GDQA acts
  on a group either way) and the wordings per group. Whether a group carries a
  gradient is :func:`anatomy_r1.task.groups.group_has_gradient`, the same test DAPO's filter and GPG's
  scale use.
* ``_generate_single_turn`` (from :class:`~anatomy_r1.training.rollouts.PerMemberRolloutsMixin`) keeps
  those per-member prompts when TRL generates with a vLLM server, which would otherwise sample a whole
  group from its first member's prompt.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from trl import GRPOTrainer

from anatomy_r1.augment.group_policy import GroupPolicy
from anatomy_r1.curriculum.plan import CurriculumPlan
from anatomy_r1.task.groups import group_has_gradient, invalid_ratio, total_rewards
from anatomy_r1.training.rollouts import PerMemberRolloutsMixin, vllm_pixel_budget


def _nanmean(xs: list[float]) -> float:
    vals = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(vals) / len(vals) if vals else float("nan")


class AnatomyR1GRPOTrainer(PerMemberRolloutsMixin, GRPOTrainer):  # type: ignore[misc,valid-type]
    """GRPOTrainer with an optional curriculum sampler, GDQA group variants and group-level metrics; rollouts
    carry each member's own prompt on every generation path (:mod:`anatomy_r1.training.rollouts`)."""

    def __init__(
        self,
        *args: Any,
        curriculum: CurriculumPlan | None = None,
        group_policy: GroupPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        self._curriculum = curriculum
        self._policy = group_policy
        self._local_info: dict[str, list[Any]] = {}
        self._in_refill = False
        """True while DAPO's dynamic sampling rolls out a refill round (see ``_observe_groups``)."""
        with vllm_pixel_budget(kwargs.get("args"), kwargs.get("processing_class")):
            super().__init__(*args, **kwargs)
        self._install_rollout_guards()
        self._acc_index = next(
            (i for i, n in enumerate(self.reward_func_names) if n.startswith("accuracy")), None
        )

    # ------------------------------------------------------------------ ASCL: the sampler seam
    def _get_train_sampler(self, dataset: Any = None) -> Any:
        base = super()._get_train_sampler(dataset)
        if self._curriculum is None:
            return base
        return self._curriculum.build_sampler(
            mini_repeat_count=base.mini_repeat_count,
            batch_size=base.batch_size,
            repeat_count=base.repeat_count,
            seed=self.args.seed,
        )

    # ------------------------------------------------------------------ GDQA: the rollout seam
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        g = self.num_generations if self.model.training else self.num_generations_eval
        offset = self.accelerator.process_index * len(inputs)
        augmented: list[bool] = []
        wordings: list[str] = []
        variant_rows = [False] * len(inputs)
        if self._policy is not None and self.model.training:
            variant_rows = [self._policy.is_variant_row(row["id"]) for row in inputs]
            new_inputs = []
            for i, row in enumerate(inputs):
                w = self._policy.wording_for(row["id"], (offset + i) % g, g, self.state.global_step)
                row = dict(row)
                if w is not None:
                    row["prompt"] = w.prompt
                    row["prompt_text"] = w.text
                    row["options"] = list(w.record.options)
                    row["answer_index"] = w.record.answer_index
                new_inputs.append(row)
                augmented.append(w is not None)
                wordings.append(row["prompt_text"])
            inputs = new_inputs
        else:
            augmented = [False] * len(inputs)
            wordings = [row.get("prompt_text", "") for row in inputs]
        self._local_info = {
            "id": [row["id"] for row in inputs],
            "cls": [row.get("anatomy_class", "unknown") for row in inputs],
            "s_q": [float(row.get("s_q", float("nan"))) for row in inputs],
            "aug": augmented,
            "variant_row": variant_rows,
            "wording": wordings,
        }
        return super()._generate_and_score_completions(inputs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[override]
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # Gathered totals of this call, computed once: the group metrics and the DAPO/GPG seams read them.
        self._last_total_rewards = total_rewards(rewards_per_func.tolist(), self.reward_weights.tolist())
        self._observe_groups(rewards_per_func)
        return rewards_per_func

    def _observe_groups(self, rewards_per_func: Any) -> None:
        from accelerate.utils import gather_object

        mode = "train" if self.model.training else "eval"
        g = self.num_generations if self.model.training else self.num_generations_eval
        info = {k: gather_object(v) for k, v in self._local_info.items()}
        total = self._last_total_rewards
        acc = rewards_per_func[:, self._acc_index].tolist() if self._acc_index is not None else total
        n_groups = len(total) // g
        valid_by_cls: dict[str, list[bool]] = defaultdict(list)
        aug_groups = 0
        variant_groups = 0
        n_wordings = []
        for k in range(n_groups):
            sl = slice(k * g, (k + 1) * g)
            valid = group_has_gradient(total[sl])
            cls = info["cls"][k * g]
            valid_by_cls["all"].append(valid)
            valid_by_cls[cls].append(valid)
            aug_groups += any(info["aug"][sl])
            variant_groups += info["variant_row"][k * g]
            n_wordings.append(len(set(info["wording"][sl])))
            if self._policy is not None and mode == "train" and self._policy.reads_groups:
                self._policy.observe(info["id"][k * g], acc[sl])
        m = self._metrics[mode]
        if self._in_refill:
            # A refill round's groups are resampled because others failed; mixed into the batch's ratio they
            # would make DAPO's invalid-gradient ratio incomparable with the other methods'.
            if n_groups:
                m["dapo/refill_invalid_gradient_ratio"].append(invalid_ratio(valid_by_cls["all"]))
            return
        for cls, valid in valid_by_cls.items():
            key = "invalid_gradient_ratio" if cls == "all" else f"invalid_gradient_ratio/{cls}"
            m[key].append(invalid_ratio(valid))
        if n_groups:
            m["gdqa/augmented_fraction"].append(aug_groups / n_groups)
            m["gdqa/variant_row_fraction"].append(variant_groups / n_groups)
            m["gdqa/wordings_per_group"].append(sum(n_wordings) / n_groups)
        s_q = _nanmean(info["s_q"])
        if not math.isnan(s_q):
            m["curriculum/batch_mean_s_q"].append(s_q)

    # ------------------------------------------------------------------ checkpointed extra state
    def extra_state_dict(self) -> dict[str, Any]:
        return self._policy.state_dict() if self._policy is not None else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self._policy is not None:
            self._policy.load_state_dict(state)
