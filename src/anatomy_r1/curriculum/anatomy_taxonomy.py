"""Where an answer choice sits in the body: the knowledge behind the ``anatomy`` similarity backend.

A text encoder compares the *words* of two option names, so it calls "Cystic Plate" and "Cystic Duct" alike
because both say "cystic", and "Gallbladder" and "Cystic Plate" unlike although one lies on the other. What
makes two anatomy answers easy to confuse is where they are and what they belong to. This module answers
that for labels far beyond SSG-VQA's thirteen: a packaged table (``resources/anatomy_taxonomy.csv``) places
each label in two trees, its organ **system** (``digestive/hepatobiliary/liver``) and its **location**
(``abdomen/liver``). Two labels are as alike as their closest relation in either tree, measured by how deep
their common ancestor lies relative to their own depths (Wu and Palmer's path measure)::

    raw(a, b) = max over the two trees of 2 * depth(common ancestor) / (depth(a) + depth(b))

so siblings under a deep parent (two white blood cells, two finger joints) score high, labels that share only
a body region (liver and kidney) score lower, and labels with nothing in common score 0.

Option texts in real files rarely match a table row verbatim ("Ulna.", "Lungs", "Prostate (for males)",
"Costovertebral Junction", "Hepatic cyst", "Right Eye"), so :meth:`AnatomyTaxonomy.resolve` normalises
text first and then tries, in order: the whole phrase (also in the singular and without a trailing word
such as "region", "junction" or "system"); ``A of the B`` as a kind of B; ``A and B`` as A; the longest
known leading words (``hepatic cyst`` is a kind of liver, ``left ventricular chamber`` a part of the left
ventricle); a leading left/right/ordinal qualifier (``right eye`` is a kind of eye); and the longest known
trailing words (``enlarged lymph node``). A derived label becomes a child of the label it was derived from,
so "Hepatic cyst" and "Liver cyst" are the same node. Anything else is unknown here; the backend then
falls back to a text encoder.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from anatomy_r1.errors import DataError

PACKAGED = "anatomy_taxonomy.csv"
"""File name of the packaged table under ``anatomy_r1/resources``."""

HEADER = ("label", "system", "location", "aliases")

NOOP_TRAILING = frozenset(
    {"region", "area", "articulation", "junction", "connection", "joint", "system", "gland", "glands"}
)
"""Trailing words that name the kind of thing, not a different thing: "Hip region" is the hip."""

QUALIFIERS = frozenset({"left", "right", "first", "second", "third", "fourth", "fifth"})
"""Leading words that pick one of several alike structures: a "Right Eye" is a kind of eye."""

DROPPED_LEADING = frozenset({"normal"})
"""Leading words that change nothing about where a structure is: "Normal colonic mucosa"."""

_TOKEN = re.compile(r"[^\W_]+")
_PARENS = re.compile(r"\([^)]*\)")


def clean_text(text: str) -> str:
    """Lower-case words of an option text, without parenthesised notes or punctuation.

    This is what both the table lookup and the encoder fallback see, so "Ulna." and "ulna" are one string
    and "Prostate (for males)" is the prostate. A text with no letters or digits at all is kept as written
    (stripped, lower-case), so two such texts never collapse into one empty answer.
    """
    words = _TOKEN.findall(_PARENS.sub(" ", text.lower()))
    return " ".join(words) if words else text.strip().lower()


def _singulars(word: str) -> list[str]:
    """The word and the singular forms a plain English plural may hide (tables list irregular ones)."""
    out = [word]
    if len(word) > 4 and word.endswith("ies"):
        out.append(word[:-3] + "y")
    if len(word) > 3 and word.endswith("es"):
        out.append(word[:-2])
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    return out


def path_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Wu-Palmer similarity of two root-to-node paths: 2 * shared depth / (depth a + depth b)."""
    if not a or not b:
        return 0.0
    shared = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        shared += 1
    return 2.0 * shared / (len(a) + len(b))


@dataclass(frozen=True)
class Node:
    """A label placed in the two trees; ``derived`` nodes were built from a table row by a rule."""

    key: str
    system: tuple[str, ...]
    location: tuple[str, ...]
    row: str
    derived: bool = False

    def child(self, name: str) -> Node:
        """A kind or part of this node: one level deeper in every tree it belongs to."""
        return Node(
            key=f"{self.key}/{name}",
            system=(*self.system, name) if self.system else (),
            location=(*self.location, name) if self.location else (),
            row=self.row,
            derived=True,
        )


class AnatomyTaxonomy:
    """The label table: lookup of option texts, and the raw path similarity of two placed labels."""

    def __init__(self, rows: Iterable[Node], *, source: str = PACKAGED) -> None:
        self.source = source
        self.rows: dict[str, Node] = {}
        self.names: dict[str, Node] = {}
        for node in rows:
            self.rows[node.key] = node
            self.names[node.key] = node
        self._cache: dict[str, Node | None] = {}

    # ----------------------------------------------------------------------------------------------------
    # Reading the table
    # ----------------------------------------------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, source: str) -> AnatomyTaxonomy:
        """Parse the CSV; problems name the file and line, since a wrong row silently skews every S(q)."""
        numbered = [
            (n, line)
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not numbered:
            raise DataError(f"{source}: empty anatomy table")
        rows = list(csv.reader(line for _, line in numbered))
        if tuple(c.strip() for c in rows[0]) != HEADER:
            raise DataError(f"{source}:{numbered[0][0]}: header must be {','.join(HEADER)}")
        nodes: list[Node] = []
        aliases: dict[str, tuple[str, int]] = {}
        seen: dict[str, int] = {}
        for (n, _), cells in zip(numbered[1:], rows[1:], strict=True):
            if len(cells) != len(HEADER):
                raise DataError(f"{source}:{n}: expected {len(HEADER)} cells, got {len(cells)}")
            label, system, location, alias_cell = (c.strip() for c in cells)
            if not label or clean_text(label).replace(" ", "_") != label:
                raise DataError(f"{source}:{n}: label {label!r} must be lower-case words joined by '_'")
            if label in seen:
                raise DataError(f"{source}:{n}: label {label!r} already on line {seen[label]}")
            seen[label] = n
            paths = []
            for name, cell in (("system", system), ("location", location)):
                path = tuple(p.strip() for p in cell.split("/")) if cell else ()
                if path and (path[-1] != label or any(not p for p in path)):
                    raise DataError(f"{source}:{n}: {name} path {cell!r} must end with the label {label!r}")
                paths.append(path)
            nodes.append(Node(key=label, system=paths[0], location=paths[1], row=label))
            for alias in (a.strip() for a in alias_cell.split(";") if a.strip()):
                if alias in aliases:
                    raise DataError(f"{source}:{n}: alias {alias!r} already used on line {aliases[alias][1]}")
                aliases[alias] = (label, n)
        table = cls(nodes, source=source)
        for alias, (label, n) in aliases.items():
            if alias in table.rows:
                raise DataError(f"{source}:{n}: alias {alias!r} is also a label")
            table.names[alias] = table.rows[label]
        return table

    @classmethod
    def from_file(cls, path: str | Path) -> AnatomyTaxonomy:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"anatomy table not found: {p}")
        return cls.from_text(p.read_text(encoding="utf-8-sig"), str(p))

    @staticmethod
    @lru_cache(maxsize=1)
    def packaged() -> AnatomyTaxonomy:
        """The table shipped with the package (read once per process)."""
        res = resources.files("anatomy_r1").joinpath("resources", PACKAGED)
        return AnatomyTaxonomy.from_text(res.read_text(encoding="utf-8"), f"anatomy_r1/resources/{PACKAGED}")

    # ----------------------------------------------------------------------------------------------------
    # Lookup
    # ----------------------------------------------------------------------------------------------------

    def _phrase(self, words: Sequence[str]) -> Node | None:
        """A table name for these words: as written, in the singular, or without a trailing kind word."""
        if not words:
            return None
        *head, last = words
        for w in _singulars(last):
            hit = self.names.get("_".join([*head, w]))
            if hit is not None:
                return hit
        if len(words) > 1 and last in NOOP_TRAILING:
            return self._phrase(words[:-1])
        return None

    def resolve(self, text: str) -> Node | None:
        """Place an option text in the table (see the module docstring for the rules), or ``None``."""
        words = clean_text(text).split()
        key = " ".join(words)
        if key not in self._cache:
            self._cache[key] = self._resolve(words, depth=0)
        return self._cache[key]

    def _resolve(self, words: list[str], depth: int) -> Node | None:
        while words and words[0] in DROPPED_LEADING:
            words = words[1:]
        if not words or depth > 3:
            return None
        hit = self._phrase(words)
        if hit is not None:
            return hit
        if "of" in words[1:-1]:
            i = words.index("of", 1)
            rest = words[i + 1 :]
            rest = rest[1:] if rest and rest[0] in ("the", "a", "an") else rest
            base = self._resolve(rest, depth + 1)
            if base is not None:
                return base.child(_leaf(words[:i]))
        if "and" in words[1:-1]:
            base = self._resolve(words[: words.index("and", 1)], depth + 1)
            if base is not None:
                return base
        for k in range(len(words) - 1, 0, -1):  # longest known leading words: "hepatic cyst"
            base = self._phrase(words[:k])
            if base is not None:
                return base.child(_leaf(words[k:]))
        if words[0] in QUALIFIERS and len(words) > 1:  # "right eye", "first metacarpophalangeal"
            base = self._resolve(words[1:], depth + 1)
            if base is not None:
                return base.child(words[0])
        for k in range(1, len(words)):  # longest known trailing words: "enlarged lymph node"
            base = self._phrase(words[k:])
            if base is not None:
                return base.child(_leaf(words[:k]))
        return None

    # ----------------------------------------------------------------------------------------------------
    # Similarity
    # ----------------------------------------------------------------------------------------------------

    @staticmethod
    def raw_similarity(a: Node, b: Node) -> float:
        """Closest relation in either tree, in [0, 1]; 1 only for the same node."""
        if a.key == b.key:
            return 1.0
        return max(path_similarity(a.system, b.system), path_similarity(a.location, b.location))

    def display_names(self) -> list[str]:
        """One readable name per table row, as an encoder reads them: ``cystic_plate`` -> ``cystic plate``."""
        return [key.replace("_", " ") for key in self.rows]


def _leaf(words: Sequence[str]) -> str:
    """Name of a derived child: the remaining words, the last in the singular ("stones" -> "stone")."""
    *head, last = words
    if len(last) > 3 and last.endswith("s") and not last.endswith(("ss", "us", "is")):
        last = last[:-1]
    return "_".join([*head, last])
