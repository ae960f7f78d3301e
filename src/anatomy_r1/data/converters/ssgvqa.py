"""SSG-VQA question files (``qa_txt/VIDxx/<frame>.txt``) turned into multiple-choice anatomy questions.

SSG-VQA answers are open labels. Only questions whose answer is an anatomy label are kept (counts, colours,
True/False and the like are dropped and counted); each gets the correct label plus distractors drawn from
the vocabulary by a :class:`~anatomy_r1.data.answer_options.DistractorStrategy`, shown with
:func:`~anatomy_r1.data.vocab.display_name`. The random generator is re-seeded from ``seed`` and the record
id for every question, so a conversion is reproducible and one question's options do not depend on which
other files were converted.

Layout: ``INPUT`` is the ``qa_txt`` folder (``VIDxx`` sub-folders of ``<frame>.txt`` files), one ``VIDxx``
folder, or one file. Every file's first two non-blank lines list the anatomy and tools present and are
skipped; every other line is ``question|answer|template_file|question_type``. CRLF line ends and blank
lines are tolerated. The image of ``VIDxx/<frame>.txt`` is ``VIDxx/<frame>.png`` relative to
``--image-root`` (point it at the folder holding the ``VIDxx`` frame folders).

Ids are ``ssgvqa-VIDxx-<frame>-<line>`` (``--id-prefix`` replaces ``ssgvqa``): they name the frame and
line already, so two files cannot collide. Distractors are seeded from that default id whatever the prefix,
so renaming records never changes their options.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anatomy_r1.data.answer_options import build_options
from anatomy_r1.data.converters.common import ConvertOptions, Item
from anatomy_r1.data.question_templates import COLOR_NAMES, parse_question
from anatomy_r1.data.schema import make_record
from anatomy_r1.data.vocab import ANATOMY_LABELS, POSITIONS, display_name
from anatomy_r1.errors import ConfigError, DataError

SOURCE = "ssgvqa"
N_OPTIONS = 4
PRESENCE_LINES = 2
IMAGE_EXT = ".png"
VAL_VIDEOS = frozenset({1, 18, 31, 35, 48})
TEST_VIDEOS = frozenset({2, 22, 43, 60, 74})
_VIDEO = re.compile(r"VID(\d+)")


def official_split(video: str) -> str | None:
    """SSG-VQA's video-level split; None for a folder name that is not ``VID<number>``."""
    m = _VIDEO.fullmatch(video)
    if m is None:
        return None
    n = int(m.group(1))
    return "val" if n in VAL_VIDEOS else "test" if n in TEST_VIDEOS else "train"


def question_files(root: Path) -> Iterator[Path]:
    """Question files under ``root`` in a stable (sorted) order; ``root`` may be a single file."""
    if not root.exists():
        raise DataError(f"{root}: no such file or directory")
    if root.is_file():
        yield root
        return
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    found = False
    for e in entries:
        if e.is_file() and e.name.endswith(".txt"):
            found = True
            yield Path(e.path)
    for e in entries:
        if e.is_dir():
            for f in sorted(os.scandir(e.path), key=lambda x: x.name):
                if f.is_file() and f.name.endswith(".txt"):
                    found = True
                    yield Path(f.path)
    if not found:
        raise DataError(f"{root}: no question files (expected qa_txt/VIDxx/<frame>.txt)")


def read_frame(path: Path) -> tuple[list[str], list[tuple[int, str]]]:
    """``(presence lines, numbered question lines)`` of one file, blanks removed; strict UTF-8."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    presence: list[str] = []
    out: list[tuple[int, str]] = []
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        if len(presence) < PRESENCE_LINES:
            presence.append(line)
        else:
            out.append((n, line))
    return presence, out


_COLOR_OF_POSITION = re.compile(r"what colou?r is the (?P<pos>[a-z-]+) anatomy ?\??", re.IGNORECASE)
_COLOR_OF_LABEL = re.compile(r"what colou?r is the (?P<label>[a-z_ ]+?) ?\??", re.IGNORECASE)
_WHERE_IS_COLOR = re.compile(
    r"(?:where is|what is the location of) the (?P<color>[a-z]+) anatomy ?\??", re.IGNORECASE
)
_WHERE_IS_LABEL = re.compile(
    r"(?:where is|what is the location of) the (?P<label>[a-z_ ]+?) ?\??", re.IGNORECASE
)


def frame_facts(presence: list[str], lines: list[tuple[int, str]]) -> dict[str, Any] | None:
    """What a frame's question lines state about its anatomy: which is present, and where and what colour.

    Re-referring GDQA variants (``anatomy_r1.augment.rerefer``) may name a target by position or colour
    only when these facts prove the new description unique, so an attribute is recorded only when the
    lines agree on it; a label stated at two positions (or in two colours) keeps that attribute unknown.
    ``None`` when the first presence line does not list the anatomy, since without the complete list no
    description can be proven unique.
    """
    if not presence or "|" not in presence[0]:
        return None
    present = [a.strip() for a in presence[0].rsplit("|", 1)[1].split(",") if a.strip()]
    if not present or any(a not in ANATOMY_LABELS for a in present):
        return None
    seen: dict[str, dict[str, set[str]]] = {a: {"position": set(), "color": set()} for a in present}
    by_pos: list[tuple[str, str]] = []  # (position, colour) of "the <pos> anatomy" colour answers
    by_color: list[tuple[str, str]] = []  # (colour, position) of "the <colour> anatomy" location answers

    def note(label: str, attr: str, value: str | None) -> None:
        if label in seen and value is not None:
            seen[label][attr].add(value)

    for _, line in lines:
        parts = line.rsplit("|", 3)
        if len(parts) != 4:
            continue
        question, answer = parts[0].strip(), parts[1].strip()
        label_key = answer.replace(" ", "_").lower()
        if answer in seen:
            parsed = parse_question(question)
            if parsed is not None and not parsed[0].relations:
                note(answer, "position", parsed[0].position)
                note(answer, "color", parsed[0].color)
            continue
        if answer in COLOR_NAMES:
            m = _COLOR_OF_POSITION.fullmatch(question)
            if m and m["pos"].lower() in POSITIONS:
                by_pos.append((m["pos"].lower(), answer))
            elif (m := _COLOR_OF_LABEL.fullmatch(question)) is not None:
                note(m["label"].strip().replace(" ", "_").lower(), "color", answer)
        elif label_key in POSITIONS:
            m = _WHERE_IS_COLOR.fullmatch(question)
            if m and m["color"].lower() in COLOR_NAMES:
                by_color.append((m["color"].lower(), label_key))
            elif (m := _WHERE_IS_LABEL.fullmatch(question)) is not None:
                note(m["label"].strip().replace(" ", "_").lower(), "position", label_key)

    def single(label: str, attr: str) -> str | None:
        values = seen[label][attr]
        return next(iter(values)) if len(values) == 1 else None

    # "The <pos> anatomy is <colour>" names the label only through a position some other line stated.
    for pos, color in by_pos:
        at = [a for a in present if single(a, "position") == pos]
        if len(at) == 1:
            note(at[0], "color", color)
    for color, pos in by_color:
        having = [a for a in present if single(a, "color") == color]
        if len(having) == 1:
            note(having[0], "position", pos)
    objects = {
        a: {"position": single(a, "position"), "color": single(a, "color")}
        for a in present
        if single(a, "position") is not None or single(a, "color") is not None
    }
    return {"anatomy": present, "objects": objects}


def read(path: Path, options: ConvertOptions) -> Iterator[Item]:
    """Stream multiple-choice records from a ``qa_txt`` tree (see the module docstring for the layout)."""
    vocabulary = options.classes if options.classes is not None else ANATOMY_LABELS
    if len(vocabulary) < 2:
        raise ConfigError("SSG-VQA conversion needs at least two classes to make a multiple-choice question")
    allowed = frozenset(vocabulary)
    anatomy = frozenset(ANATOMY_LABELS)
    k = min(N_OPTIONS, len(vocabulary)) - 1
    display = {label: display_name(label) for label in vocabulary}
    strategy = options.strategy
    seed = options.seed
    skipped = options.skipped
    ids = options.ids(path, default=SOURCE)
    rng = random.Random()

    for file in question_files(path):
        video = file.parent.name
        frame = file.stem
        split = official_split(video)
        image = f"{video}/{frame}{IMAGE_EXT}"
        seed_prefix = f"{SOURCE}-{video}-{frame}-"
        id_prefix = ids.positional(f"{video}-{frame}-")
        fname = str(file)
        try:
            presence, lines = read_frame(file)
        except DataError as e:  # one file's bad bytes say nothing about the other files
            options.reject(e)
            continue
        facts = frame_facts(presence, lines)
        for n, line in lines:
            parts = line.rsplit("|", 3)
            if len(parts) != 4:
                options.reject(
                    DataError(
                        f"{fname}:{n}: expected 'question|answer|template_file|question_type', "
                        f"found {len(parts)} field(s)"
                    )
                )
                continue
            answer = parts[1].strip()
            if answer not in allowed:
                skipped["class not in --classes" if answer in anatomy else "non-anatomy answer"] += 1
                continue
            question = parts[0].strip()
            where = f"{fname}:{n}"
            if not question:
                options.reject(DataError(f"{where}: empty question"))
                continue
            rid = f"{id_prefix}{n}"
            rng.seed(f"{seed}:{seed_prefix}{n}")
            try:
                distractors = strategy.choose(answer, vocabulary, k, rng)
            except ValueError as e:
                options.reject(DataError(f"{where}: {e}"))
                continue
            labels, answer_index = build_options(answer, distractors, rng)
            opts = [display.get(label) or display_name(label) for label in labels]
            template = parts[2].strip()
            if template.endswith(".json"):
                template = template[:-5]
            meta = {
                "anatomy_class": answer,
                "video": video,
                "frame": frame,
                "split": split,
                "template_family": template,
                "question_type": parts[3].strip(),
                "distractors": strategy.name,
            }
            if facts is not None:
                meta["scene_facts"] = facts
            try:
                rec = make_record(
                    id=rid,
                    images=[image],
                    question=question,
                    options=opts,
                    answer_index=answer_index,
                    source=SOURCE,
                    meta=meta,
                    where=where,
                )
            except DataError as e:
                options.reject(e)
                continue
            yield where, rec
