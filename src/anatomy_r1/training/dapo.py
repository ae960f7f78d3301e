"""DAPO's dynamic sampling at TRL's rollout seam, as a mixin of the Anatomy-R1 GRPO trainer.

The rest of DAPO is configuration (``grpo.loss_type: dapo`` for the token-level loss, ``grpo.epsilon_high``
for clip-higher); dynamic sampling is what TRL lacks. :class:`DynamicSamplingMixin` overrides
``_generate_and_score_completions``: after TRL has generated and scored the generation batch, groups whose
rewards are all equal (zero advantage, no gradient) are dropped and their slots refilled with groups rolled
out for fresh prompts drawn from the train dataset with a seeded RNG (each prompt repeated
``num_generations`` times). Only groups with a non-zero reward spread are kept from the refill rounds.
Refill prompts are drawn uniformly from the whole train set (DAPO has no curriculum; combined with ASCL the
refills would ignore its pacing). After ``max_refill_rounds`` rounds the batch keeps what it has: slots
still unfilled keep their original zero-std group, whose advantages are zero, so the batch shape (and
TRL's split into ``steps_per_generation`` micro-batches) never changes. Logged per generation batch:
``dapo/dropped_groups``, ``dapo/refill_rounds``, ``dapo/refilled_groups``,
``dapo/remaining_zero_std_groups`` and ``dapo/extra_rollouts``.

On several processes TRL shards a generation batch by process (each holds its slice of the global batch)
while rewards, hence group validity, are gathered. So every decision is taken on the gathered validity and
is the same everywhere; every process draws the same refill prompts (seeded by step and round) and
generates its slice of them, with the refill rounded up to a whole number of rows per process. The
re-assembled *global* batch keeps TRL's layout (group ``k`` at rows ``k*G..k*G+G-1``), and each process
takes its own slice of it; the rows of that slice that another process generated are exchanged with one
``gather_object`` of exactly those rows (:func:`~anatomy_r1.training.batch_rows.rows_to_send`), so groups
stay whole and nothing else moves. ``num_items_in_batch`` is re-summed over processes, as TRL does. The
row bookkeeping itself is :mod:`anatomy_r1.training.batch_rows`.
"""

from __future__ import annotations

import random
from typing import Any

from anatomy_r1.task.groups import group_valid_mask
from anatomy_r1.training.batch_rows import (
    global_row_plan,
    loss_tokens,
    per_sequence_keys,
    refill_size,
    rows_to_send,
    split_rows,
    stack_rows,
    take_local_rows,
)
from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer


class DynamicSamplingMixin:
    """DAPO's dynamic sampling at TRL's rollout seam; see the module docstring."""

    _last_total_rewards: list[float]  # the gathered totals of the latest reward call, kept by the trainer

    max_refill_rounds: int = 3
    """Refill rounds per generation batch before keeping the zero-std groups that are left."""
    whole_batch: bool = False
    """DAPO (False): refill the dropped slots, keep the valid groups, and keep what the rounds found. The
    release's GPG (True, :mod:`anatomy_r1.training.gpg_release`): each round rolls out a whole fresh batch;
    once the valid groups collected (first batch's first) fill a batch they replace it, and when the rounds
    run out the first batch is kept as generated, zero-std groups and all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_group_valid: list[bool] | None = None
        """Which groups of the training batch last returned carry a gradient, refilled slots included: a later
        seam (GPG's scale) must count the assembled batch's groups, not those of the last refill round."""

    def _refill_inputs(self, n_groups: int, round_idx: int) -> list[dict[str, Any]]:
        """This process's share of ``n_groups`` fresh groups, reproducible from the seed, step and round.

        Every process draws the same global list of prompts (same seeded RNG) and keeps its slice, as
        TRL's sampler shards a generation batch; only that slice's images are decoded.
        """
        ds = self.train_dataset  # type: ignore[attr-defined]
        g = self.num_generations  # type: ignore[attr-defined]
        seed = self.args.seed  # type: ignore[attr-defined]
        rng = random.Random(f"dapo-refill:{seed}:{self.state.global_step}:{round_idx}")  # type: ignore[attr-defined]
        picks = [rng.randrange(len(ds)) for _ in range(n_groups)]
        rows = [idx for idx in picks for _ in range(g)]
        n_proc = self.accelerator.num_processes  # type: ignore[attr-defined]
        n = len(rows) // n_proc
        mine = rows[self.accelerator.process_index * n : (self.accelerator.process_index + 1) * n]  # type: ignore[attr-defined]
        return [dict(ds[idx]) for idx in mine]

    def _refill_round(self, n_groups: int, round_idx: int) -> tuple[dict[str, Any], list[bool]]:
        """Roll out ``n_groups`` fresh groups; their batch and which of them carry a gradient."""
        self._in_refill = True  # the trainer logs a refill's groups under their own metric
        try:
            refill = super()._generate_and_score_completions(self._refill_inputs(n_groups, round_idx))  # type: ignore[misc]
        finally:
            self._in_refill = False
        return refill, group_valid_mask(self._last_total_rewards, self.num_generations)  # type: ignore[attr-defined]

    def _whole_batch(self, first: dict[str, Any], valid: list[bool]) -> dict[str, Any]:
        """The release's policy (see :attr:`whole_batch`)."""
        g = self.num_generations  # type: ignore[attr-defined]
        n_proc = self.accelerator.num_processes  # type: ignore[attr-defined]
        n_groups = len(valid)
        batches = [first]
        collected = [(0, k) for k, ok in enumerate(valid) if ok]
        rounds = extra = 0
        while len(collected) < n_groups and rounds < self.max_refill_rounds:
            rounds += 1
            n = refill_size(n_groups, g, n_proc)
            refill, ok = self._refill_round(n, rounds)
            extra += n * g
            batches.append(refill)
            collected += [(len(batches) - 1, j) for j, good in enumerate(ok) if good]
        filled = len(collected) >= n_groups
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        metrics["dapo/dropped_groups"].append(float(n_groups - sum(valid)))
        metrics["dapo/refill_rounds"].append(float(rounds))
        metrics["dapo/batch_replaced"].append(float(filled and rounds > 0))
        metrics["dapo/extra_rollouts"].append(float(extra))
        if not filled or rounds == 0:
            self._batch_group_valid = list(valid)
            return first
        self._batch_group_valid = [True] * n_groups
        slots = dict(enumerate(collected[:n_groups]))
        return self._assemble(batches, global_row_plan(n_groups, g, slots))

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._batch_group_valid = None
        first = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        if not self.model.training:  # type: ignore[attr-defined]
            return first
        g = self.num_generations  # type: ignore[attr-defined]
        n_proc = self.accelerator.num_processes  # type: ignore[attr-defined]
        # Rewards are gathered, so validity is global and every process takes the same decisions.
        valid = group_valid_mask(self._last_total_rewards, g)
        if self.whole_batch:
            return self._whole_batch(first, valid)
        dropped = [k for k, ok in enumerate(valid) if not ok]
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        batches = [first]
        slots: dict[int, tuple[int, int]] = {}  # dropped group -> (call, group) replacing it
        rounds = extra = 0
        while len(slots) < len(dropped) and rounds < self.max_refill_rounds:
            rounds += 1
            n = refill_size(len(dropped) - len(slots), g, n_proc)
            refill, ok = self._refill_round(n, rounds)
            extra += n * g
            batches.append(refill)
            open_slots = [k for k in dropped if k not in slots]
            good = [j for j, is_ok in enumerate(ok) if is_ok]
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
        return self._assemble(batches, global_row_plan(len(valid), g, slots))

    def _assemble(self, batches: list[dict[str, Any]], plan: list[tuple[int, int]]) -> dict[str, Any]:
        """This process's slice of the re-assembled global batch; rows generated elsewhere are exchanged."""
        from accelerate.utils import gather_object, send_to_device

        acc = self.accelerator  # type: ignore[attr-defined]
        per_sequence = per_sequence_keys(self.args)  # type: ignore[attr-defined]
        split = [split_rows(b, per_sequence) for b in batches]
        local_rows = [s.rows for s in split]
        received: dict[tuple[int, int], dict[str, Any]] = {}
        if acc.num_processes > 1:
            n_local = [len(rows) for rows in local_rows]
            outgoing = [
                (key, send_to_device(local_rows[key[0]][key[1] % n_local[key[0]]], "cpu"))
                for key in rows_to_send(plan, acc.process_index, acc.num_processes, n_local)
            ]
            # Every process calls the gather (the plan is the same everywhere), so none waits forever.
            received = {tuple(key): send_to_device(row, acc.device) for key, row in gather_object(outgoing)}
        rows = take_local_rows(plan, acc.process_index, acc.num_processes, local_rows, received)
        pad_id = self._tokenizer.pad_token_id  # type: ignore[attr-defined]
        merged = stack_rows(rows, split[0].shared, split[0].list_keys, pad_id, per_sequence)
        dtype = batches[0]["num_items_in_batch"].dtype
        merged["num_items_in_batch"] = acc.gather(loss_tokens(merged)).sum().to(dtype)
        return merged


class DAPOTrainer(DynamicSamplingMixin, AnatomyR1GRPOTrainer):
    """Anatomy-R1 trainer with DAPO dynamic sampling (clip-higher and token loss come from the config)."""
