"""What a run is about to do, said before its first step: the method's parts and whether each can act.

A run can name ASCL and GDQA and still do neither: a similarity backend on which no item reaches the
difficulty rule, variant kinds the data cannot feed, an engine that would collapse a group's wordings.
The summary reads the built trainer (not the config), so it reports what will happen; ``train`` prints it
at start-up and ``anatomy-r1 check`` prints it for a GPU recipe run on a laptop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.data.option_meta import s_q_of
from anatomy_r1.data.schema import Record
from anatomy_r1.training.config import TrainConfig
from anatomy_r1.training.launch import LaunchSetup

#: Difficult items probed for variants at start-up: enough to see a kind that cannot act, cheap to run.
VARIANT_PROBE = 64

#: The per-step shares of groups GDQA acted on, in two ways that never meet (a variant row is never
#: reworded): groups reworded at rollout, and groups whose question is a variant row added to the data.
#: The idle warning and the end-of-run line count both; published tables quote the first alone.
GDQA_ACTING_KEYS: tuple[str, ...] = ("gdqa/augmented_fraction", "gdqa/variant_row_fraction")


def gdqa_acting_fraction(row: dict[str, Any]) -> float | None:
    """The share of a logged step's groups GDQA acted on, either way; None where the step logs neither."""
    values = [float(row[k]) for k in GDQA_ACTING_KEYS if isinstance(row.get(k), int | float)]
    return sum(values) if values else None


@dataclass
class RunSummary:
    """Labelled lines, and the warnings among them that say a part of the method cannot act."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, label: str, text: str) -> None:
        self.lines.append((label, text))

    def render(self) -> str:
        width = max((len(k) for k, _ in self.lines), default=0)
        out = [f"  {k.ljust(width)}  {v}" for k, v in self.lines]
        out += [f"warning: {w}" for w in self.warnings]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": dict(self.lines), "warnings": list(self.warnings)}


def _spread(values: list[float]) -> str:
    import numpy as np

    a = np.asarray(values, dtype=float)
    q = np.quantile(a, [0.0, 0.25, 0.5, 0.75, 1.0])
    return f"min {q[0]:.3f}, quartiles {q[1]:.3f} / {q[2]:.3f} / {q[3]:.3f}, max {q[4]:.3f}"


def describe_rollouts(args: Any, gdqa_enabled: bool) -> str:
    """How TRL will generate, and whether that carries each member's own prompt."""
    if not getattr(args, "use_vllm", False):
        return "transformers generate, one completion per row (each member's own prompt)"
    if args.vllm_mode == "colocate":
        return "vLLM colocated in each process, one request per row (each member's own prompt)"
    if gdqa_enabled:
        return (
            "vLLM server: one request of n=num_generations per group whose members share a prompt, "
            "one request per member where GDQA varied them"
        )
    return "vLLM server, one request of n=num_generations per group"


def _method(cfg: TrainConfig, trainer: Any) -> str:
    args = trainer.args
    parts = [type(trainer).__name__, f"loss {args.loss_type}", f"scale_rewards {args.scale_rewards}"]
    parts += [f"beta {args.beta}", f"G {args.num_generations}", f"lr {args.learning_rate:g}"]
    return ", ".join(parts)


def _master_dtype(model: Any) -> str:
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.requires_grad})
    return "/".join(dtypes) or "none (nothing trainable)"


def refill_bypasses_curriculum(trainer: Any) -> str | None:
    """The warning a curriculum run with dynamic sampling needs (None without dynamic sampling).

    Its resampling rounds draw prompts uniformly from the whole training set (training.dapo): the groups
    they train on follow no pacing, so a run meant to start easy also trains on the hardest questions from
    its first step, as often as groups fail.
    """
    from anatomy_r1.training.dapo import DynamicSamplingMixin

    if not isinstance(trainer, DynamicSamplingMixin):
        return None
    what = (
        "gpg: release resamples whole batches"
        if trainer.whole_batch
        else "dynamic_sampling refills the groups it drops"
    )
    return (
        f"curriculum: {what} with prompts drawn uniformly from the whole training set, outside the "
        "curriculum's pacing; only the first batch of each step follows it"
    )


def describe_run(cfg: TrainConfig, records: list[Record], trainer: Any, launch: LaunchSetup) -> RunSummary:
    """The summary of a built GRPO trainer (see the module docstring)."""
    from anatomy_r1.training.args import run_precision
    from anatomy_r1.training.rollouts import pixel_budget

    s = RunSummary()
    added = sum("variant_of" in r.meta for r in records)
    extra = f" + {added} GDQA variant rows" if added else ""
    s.add(
        "data",
        f"{len(records) - added} questions from {cfg.data.train}{extra}; prompt template {cfg.template}",
    )
    scores = [x for x in map(s_q_of, records) if not math.isnan(x)]
    if scores:
        s.add("S(q)", f"backend {cfg.curriculum.backend} ({cfg.curriculum.mode}): {_spread(scores)}")
    c = cfg.curriculum
    if c.enabled:
        s.add(
            "curriculum",
            f"ASCL, pacing {c.pacing} (start {c.start_fraction}, ramp {c.ramp_fraction}, stages {c.stages}) "
            f"over {trainer._curriculum.total_batches} generation batches",
        )
        resampling = refill_bypasses_curriculum(trainer)
        if resampling:
            s.warnings.append(resampling)
    else:
        s.add("curriculum", "off (shuffled, as TRL samples)")
    g = cfg.gdqa
    policy = trainer._policy
    if g.enabled and policy is not None:
        difficult = policy.difficult_at_start()
        sources = ", ".join(g.kinds) + (", variants_file" if g.variants_file else "")
        sources += ", paraphraser" if g.paraphraser else ""
        rows = g.placement == "own_groups" and g.difficulty != "failure"
        # With own_groups GDQA acts on the variant rows' groups, so they are counted apart from the
        # questions they stand for.
        counted = f"{len(difficult)} of {len(records) - added} at the start" + (
            f", {added} variant rows added" if rows else ""
        )
        s.add("GDQA", f"variants from {sources}; difficult: {policy.rule()}; {counted}")
        later = "it acts only after a question's group fails" if g.difficulty != "s_q" else "it never acts"
        if not difficult:
            s.warnings.append(f"GDQA: no question starts as difficult ({policy.rule()}); {later}")
        elif rows and not added:
            s.warnings.append(
                f"GDQA: the kinds {sources} gave none of the {len(difficult)} difficult questions a variant "
                f"row; {later}"
            )
        probe = (difficult or records)[:VARIANT_PROBE]
        ok = sum(policy.can_vary(r.id, trainer.num_generations) for r in probe)
        n = len(probe)
        s.add("GDQA variants", f"{ok} of {n} probed items get another wording")
        if n and not ok:
            hint = " (rerefer needs scene facts: SSG-VQA or synthetic data)" if "rerefer" in g.kinds else ""
            s.warnings.append(
                f"GDQA: the kinds {sources} gave none of {n} probed items another wording{hint}; "
                "GDQA will augment nothing"
            )
    else:
        s.add("GDQA", "off")
    s.add("method", _method(cfg, trainer))
    s.add("rollouts", describe_rollouts(trainer.args, g.enabled))
    budget = pixel_budget(trainer.processing_class)
    if budget:
        s.add("frames", f"pixel range {budget['min_pixels']}..{budget['max_pixels']} per frame")
    plan = run_precision(cfg)
    s.add("precision", f"{plan.describe()}; trainable parameters now {_master_dtype(trainer.model)}")
    s.add("launch", launch.describe())
    return s
