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
from collections.abc import Callable
from typing import Any

from anatomy_r1.training.batch_rows import (
    batch_group_valid,
    global_row_plan,
    merge_generation_batches,
    per_sequence_keys,
    refill_size,
    rows_to_send,
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
        return refill, batch_group_valid(self._last_total_rewards, self.num_generations)  # type: ignore[attr-defined]

    def _refill_rounds(
        self,
        first: dict[str, Any],
        n_open: Callable[[], int],
        keep: Callable[[int, list[bool]], None],
        round_groups: int | None = None,
    ) -> tuple[list[dict[str, Any]], int, int]:
        """Refill rounds while ``n_open()`` groups are still wanted, at most :attr:`max_refill_rounds`.

        A round rolls out ``round_groups`` groups (the release's whole batch), else as many as are open,
        rounded up so every process gets whole rows; ``keep(call, valid)`` takes what it found, ``call``
        being its index in the batches returned, which start with ``first``. Returns them with the rounds
        run and the rollouts they cost, so both policies count alike.
        """
        g = self.num_generations  # type: ignore[attr-defined]
        n_proc = self.accelerator.num_processes  # type: ignore[attr-defined]
        batches = [first]
        rounds = extra = 0
        while n_open() > 0 and rounds < self.max_refill_rounds:
            rounds += 1
            n = refill_size(round_groups if round_groups is not None else n_open(), g, n_proc)
            refill, ok = self._refill_round(n, rounds)
            extra += n * g
            batches.append(refill)
            keep(len(batches) - 1, ok)
        return batches, rounds, extra

    def _whole_batch(self, first: dict[str, Any], valid: list[bool]) -> dict[str, Any]:
        """The release's policy (see :attr:`whole_batch`)."""
        g = self.num_generations  # type: ignore[attr-defined]
        n_groups = len(valid)
        collected = [(0, k) for k, ok in enumerate(valid) if ok]

        def keep(call: int, ok: list[bool]) -> None:
            collected.extend((call, j) for j, good in enumerate(ok) if good)

        batches, rounds, extra = self._refill_rounds(
            first, lambda: n_groups - len(collected), keep, round_groups=n_groups
        )
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
        # Rewards are gathered, so validity is global and every process takes the same decisions.
        valid = batch_group_valid(self._last_total_rewards, g)
        if self.whole_batch:
            return self._whole_batch(first, valid)
        dropped = [k for k, ok in enumerate(valid) if not ok]
        slots: dict[int, tuple[int, int]] = {}  # dropped group -> (call, group) replacing it

        def keep(call: int, ok: list[bool]) -> None:
            open_slots = [k for k in dropped if k not in slots]
            good = [j for j, is_ok in enumerate(ok) if is_ok]
            for slot, j in zip(open_slots, good, strict=False):
                slots[slot] = (call, j)

        batches, rounds, extra = self._refill_rounds(first, lambda: len(dropped) - len(slots), keep)
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
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

        def exchange(local_rows: list[list[dict[str, Any]]]) -> dict[tuple[int, int], dict[str, Any]]:
            n_local = [len(rows) for rows in local_rows]
            outgoing = [
                (key, send_to_device(local_rows[key[0]][key[1] % n_local[key[0]]], "cpu"))
                for key in rows_to_send(plan, acc.process_index, acc.num_processes, n_local)
            ]
            # Every process calls the gather (the plan is the same everywhere), so none waits forever.
            return {tuple(key): send_to_device(row, acc.device) for key, row in gather_object(outgoing)}

        merged = merge_generation_batches(
            batches,
            plan,
            self._tokenizer.pad_token_id,  # type: ignore[attr-defined]
            per_sequence_keys(self.args),  # type: ignore[attr-defined]
            process=acc.process_index,
            num_processes=acc.num_processes,
            exchange=exchange,
        )
        local = merged["num_items_in_batch"]
        merged["num_items_in_batch"] = acc.gather(local).sum().to(local.dtype)
        return merged


class DAPOTrainer(DynamicSamplingMixin, AnatomyR1GRPOTrainer):
    """Anatomy-R1 trainer with DAPO dynamic sampling (clip-higher and token loss come from the config)."""
