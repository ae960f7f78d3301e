"""GDQA's policy: for one GRPO group member, whether its question is difficult and which wording it sees.

This is the one object the trainer asks (``wording_for``) and tells (``observe``). It owns everything
that decision needs, loaded once per run: the training questions by id with their S(q), the threshold
that makes an unseen question difficult (a quantile of the training set's S(q), or an absolute value),
the difficulty tracker fed with each group's accuracy, the variant generator (variant kinds, the variants
file, the paraphraser, scene graphs), and the prompt template the wordings are rendered with.

Difficulty follows ``gdqa.difficulty`` (:data:`~anatomy_r1.augment.settings.DIFFICULTY_RULES`): an unseen
question by S(q), a seen one by the tracker's verdict (``s_q_and_failure``, the default); by S(q) alone
(``s_q``); or by the tracker alone, unseen questions easy (``failure``). A decision, and the group's
wordings, are made once per (question, step) and kept: every member asks, on every process, and a DAPO
refill of the same question in the same step must see the group it saw first.

Placement follows ``gdqa.placement`` (:data:`~anatomy_r1.augment.settings.PLACEMENTS`). ``in_group``: member
0 keeps the original, the others get variants. ``own_groups`` (the shape of the paper authors' released
data, one wording per group): the questions S(q) makes difficult get ``variants_per_question`` variant
rows in the training data from the start (:meth:`GroupPolicy.extra_rows`), and a question the tracker
marks difficult has its later groups reworded as a whole, every member seeing the same variant. Variant
rows are never reworded again. ``gdqa.distractors`` lets variants draw new wrong choices
(:mod:`anatomy_r1.augment.distractors`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from anatomy_r1.augment.assign import group_wordings
from anatomy_r1.augment.distractors import DistractorRedraw, SQFn
from anatomy_r1.augment.settings import GDQASettings
from anatomy_r1.augment.tracker import DifficultyTracker
from anatomy_r1.augment.variants import VariantGenerator
from anatomy_r1.data.option_meta import s_q_of
from anatomy_r1.data.schema import Record
from anatomy_r1.task.prompts import render_prompt, user_turn

#: Groups kept in the policy's one cache (question, step, group size) -> wordings or None.
CACHE_SIZE = 100_000
#: The step the static variant rows of ``own_groups`` are drawn at (training steps count from 0).
STATIC_STEP = -1


@dataclass(frozen=True)
class Wording:
    """What one group member sees instead of the dataset row's question."""

    record: Record
    """The member's question (options and answer included: rewards are computed against it)."""
    text: str
    """The rendered prompt text."""
    prompt: list[dict[str, Any]]
    """The user turn TRL tokenizes (text and image placeholders)."""


def unseen_threshold(settings: GDQASettings, records: list[Record]) -> float:
    """The S(q) from which an unseen question counts as difficult: ``s_q_threshold`` as written, else the
    ``s_q_quantile`` of the records' S(q) (infinite, so nothing, when no record has one)."""
    if settings.s_q_threshold is not None:
        return float(settings.s_q_threshold)
    scores = [s for s in (s_q_of(r) for r in records) if not math.isnan(s)]
    if not scores:
        return math.inf
    import numpy as np

    assert settings.s_q_quantile is not None  # the settings refuse both unset
    return float(np.quantile(scores, settings.s_q_quantile))


def _shown(record: Record) -> tuple[str, tuple[str, ...]]:
    """What a member is shown, exactly: unlike ``variants.wording_key``, a change of case or spacing
    counts, since the rendered prompt, and so the tokens, differ."""
    return record.question, tuple(record.options)


class GroupPolicy:
    """Decides, per group, whether its question is difficult and renders each member's wording."""

    def __init__(
        self,
        settings: GDQASettings,
        records: list[Record],
        generator: VariantGenerator,
        *,
        template: str,
        seed: int,
    ) -> None:
        self.settings = settings
        self.records = {r.id: r for r in records}
        self.generator = generator
        self.template = template
        self.seed = int(seed)
        self.threshold = unseen_threshold(settings, records)
        self.tracker = DifficultyTracker(
            ema_alpha=settings.ema_alpha,
            threshold=settings.accuracy_threshold,
            all_correct_is_difficult=settings.all_correct_is_difficult,
        )
        self._groups: OrderedDict[tuple[str, int, int], tuple[Record, ...] | None] = OrderedDict()

    @classmethod
    def build(
        cls,
        settings: GDQASettings,
        records: list[Record],
        *,
        data_path: str,
        template: str,
        seed: int,
        s_q: SQFn | None = None,
    ) -> GroupPolicy:
        """The policy of a run: its generator built from ``gdqa:`` (the variants file read and checked
        against the records, the paraphraser imported, the scene graphs beside ``data_path`` indexed).
        ``s_q`` scores an option list with the run's similarity, for ``distractors: same_s_q``."""
        from anatomy_r1.augment.composite import CompositeGenerator
        from anatomy_r1.augment.paraphrase import load_paraphraser
        from anatomy_r1.augment.rerefer import SceneIndex

        prepared = None
        if settings.variants_file is not None:
            from anatomy_r1.augment.prepared import PreparedVariants

            prepared = PreparedVariants.from_file(settings.variants_file)
            prepared.check(records)
        generator: VariantGenerator = CompositeGenerator(
            kinds=tuple(settings.kinds),
            scenes=SceneIndex.for_data([data_path]) if "rerefer" in settings.kinds else None,
            prepared=prepared,
            external=None
            if settings.paraphraser is None
            else load_paraphraser(settings.paraphraser, "gdqa.paraphraser"),
        )
        if settings.distractors != "keep":
            answers = [r.answer for r in records]
            generator = DistractorRedraw(generator, settings.distractors, answers, s_q)
        return cls(settings, records, generator, template=template, seed=seed)

    # -- difficulty ----------------------------------------------------------------------------------
    def rule(self) -> str:
        """The difficulty rule in words, for the run summary."""
        g = self.settings
        s_q = (
            f"S(q) >= {g.s_q_threshold} (absolute)"
            if g.s_q_threshold is not None
            else f"S(q) >= its {g.s_q_quantile:g} quantile ({self.threshold:.3f})"
        )
        failure = "its groups' accuracy below the moving-average threshold or all wrong"
        if g.placement == "own_groups":
            rows = f"{g.variants_per_question} variant row(s) each for questions with {s_q}"
            reworded = f"later groups of a question reworded as a whole once seen, by {failure}"
            return {
                "s_q_and_failure": f"{rows}; {reworded}",
                "s_q": rows,
                "failure": reworded,
            }[g.difficulty]
        return {
            "s_q_and_failure": f"unseen questions when {s_q}; seen ones by {failure}",
            "s_q": f"questions with {s_q}",
            "failure": f"questions once seen, by {failure}",
        }[g.difficulty]

    def difficult_from_s_q(self, record: Record) -> bool:
        s = s_q_of(record)
        return not math.isnan(s) and s >= self.threshold

    def is_difficult(self, item_id: str) -> bool:
        """Whether this question's next group is reworded (before this step's groups are observed).

        With ``own_groups`` the S(q) part of the rule is served by the variant rows added at the start,
        so a group is reworded only on the tracker's verdict; variant rows are never reworded."""
        record = self.records[item_id]
        if "variant_of" in record.meta:
            return False
        rule = self.settings.difficulty
        own = self.settings.placement == "own_groups"
        if rule == "s_q":
            return not own and self.difficult_from_s_q(record)
        verdict = self.tracker.verdict(item_id)
        if verdict is not None:
            return verdict
        return not own and rule == "s_q_and_failure" and self.difficult_from_s_q(record)

    def is_variant_row(self, item_id: str) -> bool:
        """Whether ``item_id`` is a variant row of the training data (``own_groups`` adds them): GDQA acts on
        its groups by drawing them at all, not by rewording them, so they count apart from rewordings."""
        record = self.records.get(item_id)
        return record is not None and "variant_of" in record.meta

    def difficult_at_start(self) -> list[Record]:
        """The questions difficult before any group has been observed (with ``own_groups``: those that get
        variant rows)."""
        if self.settings.placement == "own_groups":
            if self.settings.difficulty == "failure":
                return []
            return [r for r in self.originals() if self.difficult_from_s_q(r)]
        return [r for r in self.records.values() if self.is_difficult(r.id)]

    def originals(self) -> list[Record]:
        return [r for r in self.records.values() if "variant_of" not in r.meta]

    def extra_rows(self) -> list[Record]:
        """With ``own_groups``: the variant rows the questions S(q) makes difficult add to the training
        data (distinct wordings, ``variants_per_question`` at most each), registered with the policy so
        they are looked up like any question; empty otherwise."""
        g = self.settings
        if g.placement != "own_groups" or g.difficulty == "failure":
            return []
        rows: list[Record] = []
        for r in self.difficult_at_start():
            members = group_wordings(r, 1 + g.variants_per_question, self.generator, self.seed, STATIC_STEP)
            seen = {_shown(r)}
            for v in members[1:]:
                key = _shown(v)
                if key not in seen:
                    seen.add(key)
                    rows.append(v)
        for v in rows:
            self.records[v.id] = v
        return rows

    # -- wordings ------------------------------------------------------------------------------------
    def _group(self, item_id: str, group_size: int, step: int) -> tuple[Record, ...] | None:
        key = (item_id, int(step), int(group_size))
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        members = None
        if self.is_difficult(item_id):
            if self.settings.placement == "own_groups":  # one wording for the whole group
                variant = group_wordings(self.records[item_id], 2, self.generator, self.seed, step)[1]
                members = (variant,) * group_size
            else:
                members = group_wordings(self.records[item_id], group_size, self.generator, self.seed, step)
        self._groups[key] = members
        if len(self._groups) > CACHE_SIZE:
            self._groups.popitem(last=False)
        return members

    def wording_for(self, item_id: str, member: int, group_size: int, step: int) -> Wording | None:
        """Member ``member``'s wording of question ``item_id`` at ``step``; None where it keeps the
        dataset's own (an easy question, member 0 of an ``in_group`` group, or a variant identical to the
        original)."""
        if not 0 <= member < group_size:
            raise ValueError(f"member {member} is outside a group of {group_size}")
        members = self._group(item_id, group_size, step)
        if members is None:
            return None
        original, variant = self.records[item_id], members[member]
        if _shown(variant) == _shown(original):
            return None
        text = render_prompt(variant, self.template)
        return Wording(variant, text, user_turn(text, len(variant.images), self.template))

    def can_vary(self, item_id: str, group_size: int) -> bool:
        """Whether the variant kinds give question ``item_id`` another wording (probed with the group
        training would draw at step 0; the probe's wordings are not kept, so a question probed at start-up
        runs its generator once more when its first group is drawn)."""
        original = self.records[item_id]
        members = group_wordings(original, group_size, self.generator, self.seed, 0)
        return any(_shown(m) != _shown(original) for m in members[1:])

    # -- observations --------------------------------------------------------------------------------
    @property
    def reads_groups(self) -> bool:
        """Whether any decision reads the groups' accuracy; under ``difficulty: s_q`` none does, so the
        groups need not be observed (the tracker stays empty, and is still saved and restored)."""
        return self.settings.difficulty != "s_q"

    def observe(self, item_id: str, accuracy_rewards: list[float]) -> None:
        """One whole group's accuracy rewards (gathered over processes, so every process agrees)."""
        self.tracker.update(item_id, accuracy_rewards)

    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "tracker" in state:
            self.tracker.load_state_dict(state["tracker"])
