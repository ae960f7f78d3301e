"""Rewording free-form questions: a rule-based lexical paraphraser and a guarded external one.

Free-form medical questions (OmniMedVQA: "What part is shown in this ultrasound image?") have no template
to re-render, so GDQA rewords them. The lexical paraphraser needs no model and is deterministic given its
``random.Random``; it swaps synonyms in a small, reviewed vocabulary (anatomy nouns, spatial relations,
display verbs, image nouns) and re-frames the common "what is depicted" questions. It never touches the
option texts, and never edits a span of the question that quotes an option ("Is this the right eye or the
left eye?" keeps "right eye" and "left eye" as they are), because changing those could change the answer.

An external paraphraser (for example a local LLM) can be plugged in as any callable
``(question, n) -> list[str]``; :class:`ExternalParaphraseGenerator` drops its empty, duplicate, over-long
or multi-line outputs and any output that mentions an option the original question did not mention, so
a model that leaks or swaps an answer cannot corrupt the training signal.
"""

from __future__ import annotations

import logging
import random
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from anatomy_r1.augment.variants import VariantError, make_variant, normalize_question
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError

log = logging.getLogger(__name__)


# --- option mentions --------------------------------------------------------------------------------------


def _option_regex(option: str) -> re.Pattern[str] | None:
    words = [w for w in re.split(r"[\s_\-]+", option.strip()) if w]
    if not words:
        return None
    body = r"[\s_\-]+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![\w]){body}(?![\w])", re.IGNORECASE)


def option_spans(question: str, options: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of ``question`` that quote an option text (case, space, ``_`` and ``-`` tolerant)."""
    spans: list[tuple[int, int]] = []
    for o in options:
        rx = _option_regex(o)
        if rx is not None:
            spans.extend(m.span() for m in rx.finditer(question))
    return spans


def mentioned_options(text: str, options: Sequence[str]) -> frozenset[int]:
    """Indices of the options whose text appears in ``text``."""
    out = set()
    for i, o in enumerate(options):
        rx = _option_regex(o)
        if rx is not None and rx.search(text):
            out.add(i)
    return frozenset(out)


# --- lexical rules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """A regex and the interchangeable wordings of whatever it matches."""

    pattern: re.Pattern[str]
    alternatives: Callable[[re.Match[str]], list[str]]


def _fixed(*words: str) -> Callable[[re.Match[str]], list[str]]:
    return lambda m: list(words)


_I = re.IGNORECASE
_MODALITIES = r"ultrasound|sonographic|ct|mri|mr|x-ray|pet|radiographic|endoscopic|laparoscopic"
_DISPLAY = ("shown", "depicted", "displayed", "visible", "seen")


def _display_alts(m: re.Match[str]) -> list[str]:
    aux = m.group(1)
    words = [w for w in _DISPLAY if not (aux.lower() == "being" and w == "visible")]
    return [f"{aux} {w}" for w in words]


def _medium_alts(m: re.Match[str]) -> list[str]:
    mod = m.group("mod")
    if mod:
        return [f"{mod} {w}" for w in ("image", "scan", "picture")]
    if m.group("noun").lower() == "scan":
        return []  # a bare "scan" may be a verb or part of "CT scan"; leave it
    return ["image", "picture"]


def _noun_alts(m: re.Match[str]) -> list[str]:
    word, plural = m.group(1).lower(), m.group(2)
    if word == "organ":
        alts = ["organ", "anatomical structure"]
    elif word == "anatomical structure":
        alts = ["anatomical structure", "structure"]
    else:
        alts = ["structure", "anatomical structure"]
    return [a + plural for a in alts]


def _side_alts(m: re.Match[str]) -> list[str]:
    d = m.group("dir").lower()
    return [f"to the {d} of", f"on the {d} side of"]


def _bare_side_alts(m: re.Match[str]) -> list[str]:
    d = m.group(1).lower()
    return [f"{d} of", f"to the {d} of", f"on the {d} side of"]


RULES: tuple[_Rule, ...] = (
    _Rule(
        re.compile(r"\b(is|are|being)\s+(?:shown|depicted|displayed|visible|seen|visuali[sz]ed)\b", _I),
        _display_alts,
    ),
    _Rule(re.compile(r"\bappears\s+in\b", _I), _fixed("appears in", "is shown in", "is visible in")),
    _Rule(re.compile(r"\bappear\s+in\b", _I), _fixed("appear in", "are shown in", "are visible in")),
    _Rule(
        re.compile(
            rf"\b(?:(?P<mod>{_MODALITIES})\s+)?(?P<noun>image|picture|scan)\b(?!\s+(?:image|picture|scan)\b)",
            _I,
        ),
        _medium_alts,
    ),
    _Rule(re.compile(r"\b(anatomical\s+structure|organ|structure)(s?)\b", _I), _noun_alts),
    _Rule(re.compile(r"\banatomy\b", _I), _fixed("anatomy", "anatomical structure")),
    _Rule(re.compile(r"\b(?:to\s+the|on\s+the)\s+(?P<dir>left|right)(?:\s+side)?\s+of\b", _I), _side_alts),
    _Rule(re.compile(r"(?<![\w-])(?<!the )(left|right)\s+of\b", _I), _bare_side_alts),
    _Rule(re.compile(r"\b(?:above|superior\s+to)\b", _I), _fixed("above", "superior to")),
    _Rule(re.compile(r"\b(?:below|inferior\s+to|beneath)\b", _I), _fixed("below", "inferior to", "beneath")),
    _Rule(re.compile(r"\b(?:within|inside)\b", _I), _fixed("within", "inside")),
    _Rule(
        re.compile(
            r"^(?:What|Which)\b(?=\s+(?:anatomical\s+structure|structure|organ|part|region|tissue|"
            r"anatomy|joint|bone|cells?|cell\s+type)\b)",
            _I,
        ),
        _fixed("What", "Which"),
    ),
    _Rule(
        re.compile(r"\bin\s+(?:this|the)\b(?=\s+(?:[\w-]+\s+)?(?:image|picture|scan|photo|sonogram)\b)", _I),
        _fixed("in this", "in the"),
    ),
    _Rule(re.compile(r"\bof\s+the\s+frame\b", _I), _fixed("of the frame", "of the image")),
    _Rule(
        re.compile(r"\b(?:What\s+is\s+the\s+name\s+of\s+the|What\s+name\s+is\s+the)\b", _I),
        _fixed("What is the name of the", "What is the"),
    ),
    _Rule(re.compile(r"\bis\s+at\s+the\b", _I), _fixed("is at the", "is located at the", "lies at the")),
    _Rule(re.compile(r"\blocated\s+at\b", _I), _fixed("located at", "found at", "situated at")),
    _Rule(
        re.compile(r"\b(?:depicted|pictured|imaged)\b(?=\s+(?:bone|structure|organ|region|tissue)\b)", _I),
        _fixed("depicted", "pictured", "imaged"),
    ),
    _Rule(re.compile(r"\bcome\s+from\b", _I), _fixed("come from", "originate from")),
    _Rule(re.compile(r"\boriginate(?=\s*\?)", _I), _fixed("originate", "come")),
)
"""Synonym rules; each match may be replaced by any other wording its rule lists for it."""

_FRAME_NOUNS = r"anatomical\s+structure|structure|organ|part|anatomy|object"
_FRAME_VERBS = r"shown|depicted|displayed|visible|seen|visualized|visualised|pictured"
_MEDIUM = r"(?P<medium>(?:[\w-]+\s+)?(?:image|picture|scan|photo))"
FRAME_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(
        rf"^(?:what|which)\s+(?:is\s+)?(?:the\s+)?(?:(?P<noun>{_FRAME_NOUNS})\s+)?(?:that\s+)?(?:is\s+)?"
        rf"(?:being\s+)?(?:{_FRAME_VERBS})\s+in\s+(?:this|the)\s+{_MEDIUM}\s*\?$",
        _I,
    ),
    re.compile(
        r"^what\s+does\s+(?:this|the)\s+(?P<medium>(?:[\w-]+\s+)?(?:image|picture|scan|photo|sonogram))\s+"
        r"(?:show|depict|display)\s*\?$",
        _I,
    ),
)
"""Generic identification questions ("What is depicted in the image?") that may be re-framed whole."""

FRAMES: tuple[str, ...] = (
    "What is depicted in this {medium}?",
    "Which {noun} does this {medium} show?",
    "What {noun} can be seen in this {medium}?",
    "Which {noun} is shown in this {medium}?",
    "What does this {medium} show?",
)
"""Re-framings of a generic identification question; ``{noun}`` defaults to "structure"."""

_ARTICLE_BEFORE = re.compile(r"\b(a|an|A|An)\s$")


def _match_case(template: str, replacement: str) -> str:
    if template[:1].isupper() and replacement[:1].islower():
        return replacement[:1].upper() + replacement[1:]
    return replacement


class LexicalParaphraser:
    """Rule-based rewording of free-form questions; deterministic given the ``random.Random`` passed in.

    ``p_change`` is the chance each matched phrase is swapped in one attempt; at least one phrase always
    changes, so every returned wording differs from its base.
    """

    name = "lexical"

    def __init__(
        self, rules: Sequence[_Rule] = RULES, *, p_change: float = 0.5, attempts_per_variant: int = 8
    ) -> None:
        self.rules = tuple(rules)
        self.p_change = p_change
        self.attempts_per_variant = attempts_per_variant

    def frames(self, question: str) -> list[str]:
        """Whole-question re-framings of a generic identification question (empty for anything else)."""
        q = " ".join(question.split())
        for rx in FRAME_PATTERNS:
            m = rx.match(q)
            if m is None:
                continue
            noun = " ".join((m.groupdict().get("noun") or "structure").split()).lower()
            medium = " ".join(m.group("medium").split())
            medium = medium[:1].lower() + medium[1:] if not medium[:2].isupper() else medium
            out = []
            seen = {normalize_question(q)}
            for f in FRAMES:
                text = f.format(noun=noun, medium=medium)
                if normalize_question(text) not in seen:
                    seen.add(normalize_question(text))
                    out.append(text)
            return out
        return []

    def slots(self, text: str, protected: Sequence[str] = ()) -> list[tuple[int, int, list[str]]]:
        """Non-overlapping ``(start, end, alternatives)`` edit points, skipping spans that quote an option."""
        blocked = option_spans(text, protected)
        found: list[tuple[int, int, list[str]]] = []
        for rule in self.rules:
            for m in rule.pattern.finditer(text):
                s, e = m.span()
                if s == e or any(s < be and bs < e for bs, be in blocked):
                    continue
                current = m.group(0)
                alts = [
                    _match_case(current, a)
                    for a in rule.alternatives(m)
                    if " ".join(a.split()).casefold() != " ".join(current.split()).casefold()
                ]
                if alts:
                    found.append((s, e, alts))
        found.sort(key=lambda t: (t[0], -(t[1] - t[0])))
        chosen: list[tuple[int, int, list[str]]] = []
        end = -1
        for s, e, alts in found:
            if s >= end:
                chosen.append((s, e, alts))
                end = e
        return chosen

    @staticmethod
    def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
        for s, e, rep in sorted(edits, reverse=True):
            head = text[:s]
            m = _ARTICLE_BEFORE.search(head)
            if m is not None:
                art = "an" if rep[:1].lower() in "aeiou" else "a"
                art = _match_case(m.group(1), art)
                head = head[: m.start(1)] + art + " "
            text = head + rep + text[e:]
        return text

    def paraphrases(
        self, question: str, n: int, rng: random.Random, protected: Sequence[str] = ()
    ) -> list[str]:
        """Up to ``n`` distinct rewordings of ``question``, none equal to it.

        ``protected`` holds the option texts: spans quoting them are never edited, and a rewording that
        quotes a different set of options than the question does is discarded.
        """
        if n <= 0 or not question.strip():
            return []
        mentions = mentioned_options(question, protected)
        bases = [question, *self.frames(question)]
        base_slots = [self.slots(b, protected) for b in bases]
        seen = {normalize_question(question)}
        out: list[str] = []
        order: list[int] = []
        for attempt in range(self.attempts_per_variant * n + 8):
            if len(out) >= n:
                break
            if not order:
                order = list(range(len(bases)))
                rng.shuffle(order)
            b = order.pop()
            slots = base_slots[b]
            edits = [(s, e, rng.choice(alts)) for s, e, alts in slots if rng.random() < self.p_change]
            if not edits and slots and (b == 0 or attempt % 2):
                s, e, alts = slots[rng.randrange(len(slots))]
                edits = [(s, e, rng.choice(alts))]
            if not edits and b == 0:
                continue
            text = self._apply(bases[b], edits)
            key = normalize_question(text)
            if key in seen or mentioned_options(text, protected) != mentions:
                continue
            seen.add(key)
            out.append(text)
        return out

    def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]:
        questions = self.paraphrases(record.question, n, rng, protected=record.options)
        return [
            make_variant(record, k, self.name, question=q, meta_drop=("template_id",))
            for k, q in enumerate(questions, start=1)
        ]


# --- external paraphraser -------------------------------------------------------------------------------


_QUOTES = "\"'“”‘’`"


class ExternalParaphraseGenerator:
    """Wraps an external paraphraser so only safe outputs become variants.

    Dropped: non-strings, empty or multi-line outputs, outputs equal to the question or to an earlier
    output (after case/spacing normalisation), outputs longer than ``max_chars`` or ``max_ratio`` times
    the question (plus 20 characters of slack), and outputs that quote an option the question does not
    quote. Results are cached per (question, n, options): a model call is slow, and the cache keeps a
    sampling model's answer stable within a process. For several processes to agree on a group, the
    paraphraser itself must be deterministic (greedy decoding) or its outputs precomputed.

    ``on_error="skip"`` turns a failing paraphraser into "no variants" (logged) instead of an error.
    """

    name = "external"

    def __init__(
        self,
        paraphraser: Callable[[str, int], list[str]],
        *,
        max_chars: int = 400,
        max_ratio: float = 3.0,
        on_error: str = "raise",
        cache_size: int = 50_000,
    ) -> None:
        if not callable(paraphraser):
            raise TypeError("paraphraser must be callable as (question, n) -> list[str]")
        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        self.paraphraser = paraphraser
        self.max_chars = max_chars
        self.max_ratio = max_ratio
        self.on_error = on_error
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int, tuple[str, ...]], list[str]] = OrderedDict()

    def filter(self, question: str, candidates: object, options: Sequence[str] = ()) -> list[str]:
        """The acceptable candidates, cleaned (whitespace and wrapping quotes stripped), in order."""
        if not isinstance(candidates, (list, tuple)):
            return []
        limit = min(self.max_chars, int(self.max_ratio * len(question)) + 20)
        allowed = mentioned_options(question, options)
        seen = {normalize_question(question)}
        out: list[str] = []
        for c in candidates:
            if not isinstance(c, str):
                continue
            text = c.strip()
            if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
                text = text[1:-1].strip()
            if not text or "\n" in text or "\r" in text or len(text) > limit:
                continue
            key = normalize_question(text)
            if key in seen or not mentioned_options(text, options) <= allowed:
                continue
            seen.add(key)
            out.append(text)
        return out

    def paraphrases(self, question: str, n: int, options: Sequence[str] = ()) -> list[str]:
        """Up to ``n`` validated rewordings of ``question``."""
        if n <= 0:
            return []
        key = (question, n, tuple(options))
        if key in self._cache:
            self._cache.move_to_end(key)
            return list(self._cache[key])
        try:
            raw = self.paraphraser(question, n)
        except Exception as e:
            if self.on_error == "skip":
                log.warning("external paraphraser failed on %r: %s", question, e)
                raw = []
            else:
                raise VariantError(f"external paraphraser failed on {question!r}: {e}") from e
        result = self.filter(question, raw, options)[:n]
        self._cache[key] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return list(result)

    def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]:
        return [
            make_variant(record, k, self.name, question=q, meta_drop=("template_id",))
            for k, q in enumerate(self.paraphrases(record.question, n, record.options), start=1)
        ]


def load_paraphraser(spec: str, what: str) -> Callable[[str, int], list[str]]:
    """The external paraphraser ``module:callable`` names, so a config or command line can plug one in.

    A wrong spec is a config error naming ``what`` (the option it came from), raised before any training.
    """
    import importlib

    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{what}: {spec!r} is not 'module:callable'")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what}: cannot import {module!r} ({e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what}: {module!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"{what}: {spec!r} is not callable")
    return obj
