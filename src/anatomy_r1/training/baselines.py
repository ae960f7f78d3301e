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
  ``dapo/remaining_zero_std_groups`` and ``dapo/extra_rollouts``.

  On several processes TRL shards a generation batch by process (each holds its slice of the global
  batch) while rewards, hence group validity, are gathered. So every decision is taken on the gathered
  validity and is the same everywhere; every process draws the same refill prompts (seeded by step and
  round) and generates its slice of them, with the refill rounded up to a whole number of rows per
  process. The re-assembled *global* batch keeps TRL's layout (group ``k`` at rows ``k*G..k*G+G-1``), and
  each process takes its own slice of it; the rows of that slice that another process generated are
  exchanged with one ``gather_object`` of exactly those rows (:func:`rows_to_send`), so groups stay
  whole and nothing else moves. ``num_items_in_batch`` is re-summed over processes, as TRL does.
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

import math
import random
from typing import Any, NamedTuple

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
def _pad_row(t: Any, width: int, value: float | int, side: str) -> Any:
    """Pad one row's tensor along its first (sequence) dimension to ``width``."""
    import torch

    extra = width - t.shape[0]
    if extra <= 0:
        return t
    pad = torch.full((extra, *t.shape[1:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t] if side == "left" else [t, pad], dim=0)


class SplitBatch(NamedTuple):
    """A TRL generation batch cut into rows that can be moved on their own."""

    rows: list[dict[str, Any]]
    """One dict per completion."""
    shared: dict[str, Any]
    """Batch-level entries, not indexed by row."""
    list_keys: frozenset[str]
    """Keys held as per-row lists (per-image tensors after TRL's split, ``num_images``): never stacked."""
    per_sequence: frozenset[str] = frozenset()
    """Completion-side keys holding one value per sequence, not per token: never padded."""


#: TRL's vLLM importance-sampling modes whose ratio is one value per sequence, shape ``(B, 1)``.
SEQUENCE_LEVEL_IS_MODES = ("sequence_mask", "sequence_truncate")


def per_sequence_keys(args: Any) -> frozenset[str]:
    """Keys of a TRL generation batch that hold one value per sequence under ``args`` (GRPOConfig).

    With a sequence-level importance-sampling mode the ratio is ``(B, 1)``; a batch whose completions are
    one token wide has the same shape for a per-token ratio, so the shape alone cannot tell them apart.
    """
    sequence_is = (
        getattr(args, "use_vllm", False)
        and getattr(args, "vllm_importance_sampling_correction", False)
        and getattr(args, "vllm_importance_sampling_mode", "") in SEQUENCE_LEVEL_IS_MODES
    )
    return frozenset({"importance_sampling_ratio"}) if sequence_is else frozenset()


def split_rows(batch: dict[str, Any], per_sequence: frozenset[str] = frozenset()) -> SplitBatch:
    """Cut one TRL generation batch into rows.

    Per-image tensors are first split per row with TRL's own helper, so a row carries its own
    ``pixel_values`` and ``image_grid_thw`` and can be moved (between generation calls or processes) on
    its own. ``num_items_in_batch`` is left out: it depends on the assembled batch.
    """
    import torch
    from trl.trainer.utils import split_pixel_values_by_grid

    b = split_pixel_values_by_grid(batch)
    n = len(b["advantages"])
    per_row: list[str] = []
    shared: dict[str, Any] = {}
    for key, value in b.items():
        if key == "num_items_in_batch" or value is None:
            continue
        if (isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n) or (
            isinstance(value, list) and len(value) == n
        ):
            per_row.append(key)
        else:
            shared[key] = value
    rows = [{key: b[key][i] for key in per_row} for i in range(n)]
    return SplitBatch(rows, shared, frozenset(k for k in per_row if isinstance(b[k], list)), per_sequence)


def stack_rows(
    rows: list[dict[str, Any]],
    shared: dict[str, Any],
    list_keys: frozenset[str],
    pad_id: int,
    per_sequence: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Re-pad rows (possibly from several generation calls) to common widths and stack them into one batch.

    Prompt tensors are padded on the left, completion tensors on the right, and tensors spanning prompt
    and completion (``mm_token_type_ids``) at both ends, exactly as TRL pads them; ``num_items_in_batch`` is
    for the caller to set, since on several processes it is a sum over all of them.
    """
    import torch
    from trl.trainer.utils import unsplit_pixel_values_by_grid

    p_max = max(r["prompt_ids"].shape[0] for r in rows)
    c_max = max(r["completion_ids"].shape[0] for r in rows)
    merged: dict[str, Any] = dict(shared)
    for key in rows[0]:
        vals = []
        for r in rows:
            v = r[key]
            p, c = r["prompt_ids"].shape[0], r["completion_ids"].shape[0]
            if key in per_sequence:
                pass  # one value per sequence: nothing to pad
            elif key in _LEFT_PADDED:
                fill = _LEFT_PADDED[key]
                v = _pad_row(v, p_max, pad_id if fill == "pad" else fill, "left")
            elif key in _RIGHT_PADDED and isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == c:
                fill = _RIGHT_PADDED[key]
                v = _pad_row(v, c_max, pad_id if fill == "pad" else fill, "right")
            elif key in _PROMPT_AND_COMPLETION and v.ndim == 1 and v.shape[0] == p + c:
                v = torch.cat([_pad_row(v[:p], p_max, 0, "left"), _pad_row(v[p:], c_max, 0, "right")])
            vals.append(v)
        merged[key] = vals if key in list_keys else torch.stack(vals)
    return unsplit_pixel_values_by_grid(merged)


def _loss_tokens(batch: dict[str, Any]) -> Any:
    mask = batch["completion_mask"]
    if batch.get("tool_mask") is not None:
        mask = mask * batch["tool_mask"]
    return mask.sum()


def merge_generation_batches(
    batches: list[dict[str, Any]],
    rows: list[tuple[int, int]],
    pad_id: int,
    per_sequence: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Assemble one TRL generation batch from rows ``(batch index, row index)`` of several (one process)."""
    split = [split_rows(b, per_sequence) for b in batches]
    picked = [split[b].rows[j] for b, j in rows]
    merged = stack_rows(picked, split[0].shared, split[0].list_keys, pad_id, per_sequence)
    merged["num_items_in_batch"] = _loss_tokens(merged).to(batches[0]["num_items_in_batch"].dtype)
    return merged


def global_row_plan(n_groups: int, g: int, slots: dict[int, tuple[int, int]]) -> list[tuple[int, int]]:
    """The re-assembled *global* generation batch as ``(generation call, global row)`` pairs, in TRL's order.

    Group ``k`` keeps its own rows (call 0) unless ``slots`` gives it a replacement ``(call, group)``;
    rows of a group stay consecutive, so TRL's process slicing later sees whole groups where it saw them.
    """
    plan: list[tuple[int, int]] = []
    for k in range(n_groups):
        b, grp = slots.get(k, (0, k))
        plan.extend((b, grp * g + m) for m in range(g))
    return plan


def plan_slice(plan: list[tuple[int, int]], process: int, num_processes: int) -> list[tuple[int, int]]:
    """The rows of the global plan that ``process`` holds: its slice, as TRL's ``process_slice``."""
    n = len(plan) // num_processes
    return plan[process * n : (process + 1) * n]


def rows_to_send(
    plan: list[tuple[int, int]], process: int, num_processes: int, n_local: list[int]
) -> list[tuple[int, int]]:
    """Rows that ``process`` generated and another process's slice needs (each listed once).

    Global row ``r`` of call ``b`` was generated by process ``r // n_local[b]``: TRL gathers rewards in
    process order, so every call's global batch is the processes' local batches one after another.
    """
    out: dict[tuple[int, int], None] = {}
    for q in range(num_processes):
        if q == process:
            continue
        for b, r in plan_slice(plan, q, num_processes):
            if r // n_local[b] == process:
                out[(b, r)] = None
    return list(out)


def take_local_rows(
    plan: list[tuple[int, int]],
    process: int,
    num_processes: int,
    local_rows: list[list[dict[str, Any]]],
    received: dict[tuple[int, int], dict[str, Any]],
) -> list[dict[str, Any]]:
    """This process's rows of the re-assembled batch: its own where it generated them, else received ones."""
    n_local = [len(rows) for rows in local_rows]
    out = []
    for b, r in plan_slice(plan, process, num_processes):
        owner, i = divmod(r, n_local[b])
        out.append(local_rows[b][i] if owner == process else received[(b, r)])
    return out


def refill_size(need: int, g: int, num_processes: int) -> int:
    """Groups to roll out for ``need`` open slots: rounded up so every process gets as many rows."""
    step = num_processes // math.gcd(g, num_processes)
    return -(-need // step) * step


class DynamicSamplingMixin(_GroupRewardsMixin):
    """DAPO's dynamic sampling at TRL's rollout seam; see the module docstring."""

    max_refill_rounds: int = 3
    """Refill rounds per generation batch before keeping the zero-std groups that are left."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch_group_valid: list[bool] | None = None

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

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._batch_group_valid = None
        first = super()._generate_and_score_completions(inputs)  # type: ignore[misc]
        if not self.model.training:  # type: ignore[attr-defined]
            return first
        g = self.num_generations  # type: ignore[attr-defined]
        n_proc = self.accelerator.num_processes  # type: ignore[attr-defined]
        # Rewards are gathered, so validity is global and every process takes the same decisions.
        valid = group_valid_mask(self._last_total_rewards, g)
        dropped = [k for k, ok in enumerate(valid) if not ok]
        metrics = self._metrics["train"]  # type: ignore[attr-defined]
        batches = [first]
        slots: dict[int, tuple[int, int]] = {}  # dropped group -> (call, group) replacing it
        rounds = extra = 0
        while len(slots) < len(dropped) and rounds < self.max_refill_rounds:
            rounds += 1
            n = refill_size(len(dropped) - len(slots), g, n_proc)
            self._in_refill = True  # the trainer logs a refill's groups under their own metric
            try:
                refill = super()._generate_and_score_completions(self._refill_inputs(n, rounds))  # type: ignore[misc]
            finally:
                self._in_refill = False
            extra += n * g
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
        merged["num_items_in_batch"] = acc.gather(_loss_tokens(merged)).sum().to(dtype)
        return merged

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
