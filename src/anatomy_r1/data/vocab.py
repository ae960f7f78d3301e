"""Anatomy and instrument vocabularies of SSG-VQA, and the class-similarity prior.

The similarity prior is an assumption, stated here once and used in two places: the synthetic benchmark
derives how alike two classes *look* from it, and the ``matrix`` similarity backend can score answer
choices with it. It encodes surgical anatomy of a laparoscopic cholecystectomy:

* the hepatobiliary bed (liver, gallbladder, cystic plate) is one neighbourhood: the cystic plate is the
  fibrous plane joining gallbladder to liver, so it resembles both;
* the tubular structures of Calot's triangle (cystic duct, cystic artery, cystic pedicle, blood vessel) are
  another: thin, pale-to-red tubes that surgeons themselves confuse;
* the peritoneal and bowel surfaces (omentum, gut, peritoneum, adhesion, abdominal wall cavity) are a third;
* fluid resembles nothing in particular.

Values are on a 0..1 scale (1 = indistinguishable), symmetric, with 1 on the diagonal.
"""

from __future__ import annotations

ANATOMY_LABELS: tuple[str, ...] = (
    "abdominal_wall_cavity",
    "adhesion",
    "blood_vessel",
    "cystic_artery",
    "cystic_duct",
    "cystic_pedicle",
    "cystic_plate",
    "fluid",
    "gallbladder",
    "gut",
    "liver",
    "omentum",
    "peritoneum",
)
"""SSG-VQA's 13 anatomy labels, as they appear in its answers."""

PAPER_CLASSES: tuple[str, ...] = (
    "liver",
    "gallbladder",
    "cystic_plate",
    "omentum",
    "abdominal_wall_cavity",
    "gut",
)
"""The six classes Anatomy-R1 evaluates on SGG-VQA."""

SYNTH_CLASSES: tuple[str, ...] = (*PAPER_CLASSES, "cystic_duct", "cystic_artery")
"""Classes drawn by the synthetic benchmark: the paper's six plus the two Calot's-triangle tubes."""

INSTRUMENT_LABELS: tuple[str, ...] = (
    "bipolar",
    "clipper",
    "grasper",
    "hook",
    "irrigator",
    "scissors",
    "specimen_bag",
)

POSITIONS: tuple[str, ...] = (
    "top-left",
    "top-mid",
    "top-right",
    "mid-left",
    "center",
    "mid-right",
    "bottom-left",
    "bottom-mid",
    "bottom-right",
)
"""SSG-VQA's 3x3 position vocabulary, row-major."""

RELATIONS: tuple[str, ...] = ("left", "right", "above", "below", "within")

_SPECIAL_DISPLAY = {"abdominal_wall_cavity": "Abdominal Wall Cavity"}


def display_name(label: str) -> str:
    """Readable name for a label: ``cystic_plate`` -> ``Cystic Plate``."""
    label = label.strip()
    if label in _SPECIAL_DISPLAY:
        return _SPECIAL_DISPLAY[label]
    return " ".join(w.capitalize() for w in label.replace("-", " ").replace("_", " ").split())


def label_from_display(name: str) -> str:
    """Inverse of :func:`display_name`, tolerant of case and spacing."""
    return "_".join(name.strip().lower().replace("-", " ").split())


_PAIRS: dict[frozenset[str], float] = {}


def _set(a: str, b: str, v: float) -> None:
    _PAIRS[frozenset((a, b))] = v


# Hepatobiliary bed.
_set("liver", "gallbladder", 0.55)
_set("liver", "cystic_plate", 0.65)
_set("gallbladder", "cystic_plate", 0.75)
# Calot's triangle tubes.
_set("cystic_duct", "cystic_artery", 0.85)
_set("cystic_duct", "cystic_pedicle", 0.8)
_set("cystic_artery", "cystic_pedicle", 0.8)
_set("cystic_artery", "blood_vessel", 0.8)
_set("cystic_duct", "blood_vessel", 0.6)
_set("cystic_pedicle", "blood_vessel", 0.65)
# Tubes meet the bed at the gallbladder neck.
_set("cystic_duct", "gallbladder", 0.45)
_set("cystic_artery", "gallbladder", 0.35)
_set("cystic_duct", "cystic_plate", 0.4)
_set("cystic_artery", "cystic_plate", 0.35)
_set("cystic_pedicle", "cystic_plate", 0.4)
_set("cystic_pedicle", "gallbladder", 0.4)
# Peritoneal and bowel surfaces.
_set("omentum", "gut", 0.7)
_set("omentum", "adhesion", 0.65)
_set("omentum", "peritoneum", 0.6)
_set("gut", "peritoneum", 0.5)
_set("gut", "adhesion", 0.5)
_set("peritoneum", "abdominal_wall_cavity", 0.75)
_set("adhesion", "abdominal_wall_cavity", 0.5)
_set("adhesion", "peritoneum", 0.6)
_set("omentum", "abdominal_wall_cavity", 0.55)
_set("gut", "abdominal_wall_cavity", 0.5)
# Across neighbourhoods.
_set("liver", "abdominal_wall_cavity", 0.2)
_set("liver", "omentum", 0.2)
_set("liver", "gut", 0.15)
_set("gallbladder", "gut", 0.2)
_set("gallbladder", "omentum", 0.15)
_set("cystic_plate", "omentum", 0.2)
_set("cystic_plate", "adhesion", 0.3)
_set("liver", "blood_vessel", 0.2)
_set("fluid", "blood_vessel", 0.25)
_set("fluid", "gallbladder", 0.2)

DEFAULT_SIMILARITY = 0.1
"""Similarity of any pair not listed above."""


def class_similarity(a: str, b: str) -> float:
    """Prior similarity of two anatomy labels (1.0 for the same label)."""
    if a == b:
        return 1.0
    return _PAIRS.get(frozenset((a, b)), DEFAULT_SIMILARITY)


def similarity_matrix(labels: tuple[str, ...] | list[str] = ANATOMY_LABELS) -> list[list[float]]:
    return [[class_similarity(a, b) for b in labels] for a in labels]
