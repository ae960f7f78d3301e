"""The ``gdqa:`` section of a run config (group-diverse question augmentation), beside the code it drives.

Each knob is declared once, here, with its one default; the variant kinds come from
:mod:`~anatomy_r1.augment.variants`, which owns them. The run config only includes the section.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from anatomy_r1.augment.distractors import DISTRACTOR_MODES
from anatomy_r1.augment.variants import DEFAULT_KINDS, KINDS
from anatomy_r1.strict import StrictModel

#: How a question is judged difficult: by its S(q) before it is seen and by its groups' accuracy after
#: (``s_q_and_failure``), by S(q) alone (``s_q``), or only once a group of it has failed (``failure``).
DIFFICULTY_RULES: tuple[str, ...] = ("s_q_and_failure", "s_q", "failure")

#: Where a difficult question's variants go: among the members of its own group (``in_group``, several
#: wordings in one group), or into groups of their own (``own_groups``, one wording per group: variant
#: rows added to the training data for the questions S(q) makes difficult, and a failed question's later
#: groups reworded as a whole).
PLACEMENTS: tuple[str, ...] = ("in_group", "own_groups")


class GDQASettings(StrictModel):
    """GDQA: the members of a difficult question's GRPO group see different wordings of it."""

    enabled: bool = False
    kinds: list[Literal[KINDS]] = Field(default_factory=lambda: list(DEFAULT_KINDS))  # type: ignore[valid-type]
    """Generators for the variants, tried in the order rerefer, template, lexical, reorder; ``rerefer``
    needs a scene graph (the synthetic benchmark's ``scenes/``, SSG-VQA's ``meta.scene_facts``)."""
    variants_file: str | None = None
    """Canonical JSONL of prepared variants (``anatomy-r1 augment`` output, offline LLM wordings), each
    with ``meta.variant_of``; they fill a group before any generated kind. Checked before training."""
    paraphraser: str | None = None
    """``module:callable`` returning up to ``n`` rewordings of a question, ``(question, n) -> list[str]``;
    its outputs pass the external-paraphrase filter. It must be deterministic for processes to agree."""
    difficulty: Literal[DIFFICULTY_RULES] = "s_q_and_failure"  # type: ignore[valid-type]
    """Which questions count as difficult (see :data:`DIFFICULTY_RULES`)."""
    placement: Literal[PLACEMENTS] = "in_group"  # type: ignore[valid-type]
    """Where the variants go (see :data:`PLACEMENTS`)."""
    variants_per_question: int = Field(1, ge=1)
    """With ``own_groups``: variant rows added for each question S(q) makes difficult."""
    distractors: Literal[DISTRACTOR_MODES] = "keep"  # type: ignore[valid-type]
    """What a variant does with the original's wrong choices: ``keep`` them (reworded or reordered only),
    draw new ones from the training set's answers at the original's S(q) (``same_s_q``), or draw them
    freely (``free``)."""
    s_q_quantile: float | None = Field(0.5, ge=0.0, le=1.0)
    """An unseen question counts as difficult when its S(q) is at or above this quantile of the training
    set's S(q). Relative on purpose: each similarity backend has its own scale (minilm's largest S(q) on
    the Anatomy-R1 release is 0.45, the prior's 0.9), so the same setting means the same share of
    questions under any backend; the default, the median, starts half of them as difficult."""
    s_q_threshold: float | None = None
    """An absolute S(q) on the backend's own scale instead of the quantile; setting it replaces the
    default quantile (setting both is refused)."""
    accuracy_threshold: float = Field(0.5, ge=0.0, le=1.0)
    """A question seen in training is difficult while the moving average of its groups' accuracy is below
    this, or when its last group was all wrong."""
    ema_alpha: float = Field(0.5, gt=0.0, le=1.0)
    """Weight of the newest group in that moving average."""
    all_correct_is_difficult: bool = False
    """Also augment a question whose last group was all right (its gradient is zero as well)."""
    idle_warning_steps: int = Field(50, ge=1)
    """Warn (and say so in the run summary) when GDQA has augmented no group for this many steps."""

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "threshold" in data:
            raise ValueError(
                "gdqa.threshold is now gdqa.accuracy_threshold (the groups' moving-average accuracy below "
                "which a seen question counts as difficult)"
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> GDQASettings:
        if self.enabled and not (self.kinds or self.variants_file or self.paraphraser):
            raise ValueError(
                "gdqa is enabled with no kinds, no variants_file and no paraphraser: nothing to vary"
            )
        if self.s_q_threshold is not None:
            if "s_q_quantile" in self.model_fields_set and self.s_q_quantile is not None:
                raise ValueError(
                    "set one of s_q_quantile (relative to the training set) and s_q_threshold (absolute)"
                )
            self.s_q_quantile = None
        elif self.s_q_quantile is None:
            raise ValueError("s_q_quantile and s_q_threshold are both unset: no rule for unseen items")
        if self.enabled:
            idle = self._idle_keys()
            if idle:
                raise ValueError("; ".join(idle))
        return self

    def _changed(self, *names: str) -> list[str]:
        """Those of ``names`` set to other than their default (a config may spell a default out)."""
        return [
            _setting(n, getattr(self, n))
            for n in names
            if getattr(self, n) != type(self).model_fields[n].default
        ]

    def _idle_keys(self) -> list[str]:
        """Settings that would be accepted and then do nothing under this rule and placement, one
        sentence each, naming the way out: a run must not look configured for something it never does."""
        out = []
        rows = self.placement == "own_groups" and self.difficulty != "failure"
        if self.variants_per_question != 1 and not rows:
            out.append(
                f"gdqa.variants_per_question: {self.variants_per_question} does nothing: variant rows are "
                "added only with placement: own_groups and difficulty s_q or s_q_and_failure; set it to 1 "
                "or use those"
            )
        if self.difficulty == "s_q":
            tracker = self._changed("accuracy_threshold", "ema_alpha", "all_correct_is_difficult")
            if tracker:
                out.append(
                    f"gdqa.difficulty: s_q never reads the groups' accuracy, so {_nothing(tracker)} "
                    "or use difficulty: s_q_and_failure"
                )
        if self.difficulty == "failure":
            unseen = [] if self.s_q_threshold is None else [_setting("s_q_threshold", self.s_q_threshold)]
            if self.s_q_quantile is not None:
                unseen += self._changed("s_q_quantile")
            if unseen:
                out.append(
                    f"gdqa.difficulty: failure leaves every unseen question easy, so {_nothing(unseen)} "
                    "or use difficulty: s_q_and_failure"
                )
        return out


def _setting(name: str, value: object) -> str:
    """``gdqa.name: value`` as the YAML would say it."""
    shown = str(value).lower() if isinstance(value, bool) else value
    return f"gdqa.{name}: {shown}"


def _nothing(settings: list[str]) -> str:
    one = len(settings) == 1
    return f"{', '.join(settings)} {'does' if one else 'do'} nothing; drop {'it' if one else 'them'}"
