"""Group-diverse question augmentation (GDQA): reworded variants of difficult questions for GRPO groups.

When every rollout of a GRPO group earns the same reward the group's advantages are all zero; giving the
rollouts of a hard question different wordings of the same question (same images, same correct answer)
lets their answers differ. See ``docs/augmentation.md``.
"""

from anatomy_r1.augment.assign import assign_group_variants, group_rng, group_wordings
from anatomy_r1.augment.composite import CompositeGenerator
from anatomy_r1.augment.group_policy import GroupPolicy, Wording
from anatomy_r1.augment.paraphrase import (
    ExternalParaphraseGenerator,
    LexicalParaphraser,
    mentioned_options,
)
from anatomy_r1.augment.settings import GDQASettings
from anatomy_r1.augment.tracker import DifficultyTracker, ItemStats
from anatomy_r1.augment.variants import (
    KINDS,
    OptionReorderer,
    QuestionTemplateRephraser,
    VariantError,
    VariantGenerator,
    distinct_wordings,
    make_variant,
    validate_variant,
    wording_key,
)

__all__ = [
    "KINDS",
    "CompositeGenerator",
    "DifficultyTracker",
    "ExternalParaphraseGenerator",
    "GDQASettings",
    "GroupPolicy",
    "ItemStats",
    "LexicalParaphraser",
    "OptionReorderer",
    "QuestionTemplateRephraser",
    "VariantError",
    "VariantGenerator",
    "Wording",
    "assign_group_variants",
    "distinct_wordings",
    "group_rng",
    "group_wordings",
    "make_variant",
    "mentioned_options",
    "validate_variant",
    "wording_key",
]
