"""All variant generators chained behind one object: what GDQA and ``anatomy-r1 augment`` use.

It sits above both ``variants`` (the exact generators and the variant contract) and ``paraphrase`` (free
rewording), which therefore never need to import each other.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from anatomy_r1.augment.paraphrase import ExternalParaphraseGenerator, LexicalParaphraser
from anatomy_r1.augment.prepared import PreparedVariants
from anatomy_r1.augment.rerefer import ReReferrer, SceneIndex
from anatomy_r1.augment.variants import (
    DEFAULT_KINDS,
    KINDS,
    OptionReorderer,
    QuestionTemplateRephraser,
    make_variant,
    normalize_question,
    wording_key,
)
from anatomy_r1.data.schema import Record


class CompositeGenerator:
    """Up to ``n`` variants with pairwise-distinct wordings, none equal to the original's.

    Variants read from a file (``prepared``, :mod:`anatomy_r1.augment.prepared`) come first, as written.
    Question rewordings follow in order of how much they change the reasoning and then of fidelity:
    re-referring (the target named by another path through the scene graph, when ``rerefer`` is among
    the kinds and the record has a graph), template re-renders (exact, when the question is templated),
    then an optional external paraphraser, then lexical paraphrase (of the original and of the template
    re-renders); option reordering fills the remaining slots by giving the original and reworded
    questions new option orders. A stage that yields nothing is skipped, so any record gets as many
    variants as its form allows (possibly none, e.g. two "All of the above"-style options and an
    unparaphrasable question).

    ``shuffle_options=True`` additionally gives every reworded question its own option order, so the
    correct letter also varies across the group.
    """

    name = "composite"

    def __init__(
        self,
        kinds: Sequence[str] = DEFAULT_KINDS,
        *,
        scenes: SceneIndex | None = None,
        prepared: PreparedVariants | None = None,
        template: QuestionTemplateRephraser | None = None,
        lexical: Any | None = None,
        reorder: OptionReorderer | None = None,
        external: Any | None = None,
        shuffle_options: bool = False,
    ) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(
                f"unknown variant kind(s) {', '.join(unknown)}; expected some of {', '.join(KINDS)}"
            )
        self.kinds = tuple(kinds)
        self.rerefer = ReReferrer(scenes) if "rerefer" in kinds else None
        self.prepared = prepared
        self.template = (template or QuestionTemplateRephraser()) if "template" in kinds else None
        if "lexical" in kinds:
            if lexical is None:
                lexical = LexicalParaphraser()
            self.lexical = lexical
        else:
            self.lexical = None
        self.reorder = (reorder or OptionReorderer()) if "reorder" in kinds else None
        if external is not None and not hasattr(external, "variants"):
            external = ExternalParaphraseGenerator(external)
        self.external = external
        self.shuffle_options = shuffle_options

    def _questions(self, record: Record, n: int, rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
        """Distinct reworded questions ``(text, kind, meta_updates)``, best first, at most ``n``."""
        seen = {normalize_question(record.question)}
        out: list[tuple[str, str, dict[str, Any]]] = []

        def add(text: str, kind: str, meta: dict[str, Any]) -> None:
            key = normalize_question(text)
            if text.strip() and key not in seen and len(out) < n:
                seen.add(key)
                out.append((text, kind, meta))

        if self.rerefer is not None:
            for text, meta in self.rerefer.rereferences(record, n, rng):
                add(text, "rerefer", meta)
        if self.template is not None and len(out) < n:
            for text, tid in self.template.rephrasings(record, n - len(out), rng):
                add(text, "template", {"template_id": tid})
        if self.external is not None and len(out) < n:
            for v in self.external.variants(record, n - len(out), rng):
                add(v.question, "external", {})
        if self.lexical is not None and len(out) < n:
            bases = [(record.question, "", {}), *out]
            for base_text, base_kind, base_meta in bases:
                if len(out) >= n:
                    break
                want = n - len(out)
                for text in self.lexical.paraphrases(base_text, want, rng, protected=record.options):
                    kind = f"{base_kind}+lexical" if base_kind else "lexical"
                    add(text, kind, dict(base_meta))
        return out

    def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]:
        if n <= 0:
            return []
        specs: list[tuple[str, list[str], str, dict[str, Any]]] = []
        if self.prepared is not None:
            for v in self.prepared.variants(record)[:n]:
                specs.append((v.question, list(v.options), "file", {}))
            if len(specs) >= n:
                return self._build(record, specs)
        questions = self._questions(record, n - len(specs), rng)
        shuffled: list[list[str]] = []
        if self.shuffle_options and self.reorder is not None:
            shuffled = self.reorder.permutations(record.options, record.answer, len(questions), rng)
        for i, (text, kind, meta) in enumerate(questions):
            if shuffled:
                specs.append((text, shuffled[i % len(shuffled)], f"{kind}+reorder", meta))
            else:
                specs.append((text, list(record.options), kind, meta))
        if self.reorder is not None and len(specs) < n:
            bases = [(record.question, "", {})] + [(q, k, m) for q, k, m in questions]
            seen = {wording_key(record)} | {(normalize_question(q), tuple(o)) for q, o, _, _ in specs}
            perms = self.reorder.permutations(record.options, record.answer, n, rng)
            # Every (question wording, option order) pair, interleaved so that consecutive variants
            # change the question as well as the order; the original question comes first.
            for r in range(len(perms)):
                for b, (text, kind, meta) in enumerate(bases):
                    order = perms[(r + b) % len(perms)]
                    key = (normalize_question(text), tuple(order))
                    if len(specs) >= n or key in seen:
                        continue
                    seen.add(key)
                    specs.append((text, list(order), f"{kind}+reorder" if kind else "reorder", meta))
        return self._build(record, specs)

    @staticmethod
    def _build(record: Record, specs: list[tuple[str, list[str], str, dict[str, Any]]]) -> list[Record]:
        free = ("lexical", "external", "file")
        seen = {wording_key(record)}
        unique = []
        for spec in specs:  # a generated wording may repeat one read from the file
            key = (normalize_question(spec[0]), tuple(spec[1]))
            if key not in seen:
                seen.add(key)
                unique.append(spec)
        return [
            make_variant(
                record,
                k,
                kind,
                question=text,
                options=opts,
                meta_updates=meta,
                # A free rewording no longer follows the record's template.
                meta_drop=("template_id",) if any(f in kind for f in free) else (),
            )
            for k, (text, opts, kind, meta) in enumerate(unique, start=1)
        ]
