"""Class appearance and frame rendering for the synthetic benchmark.

Appearance is derived from :func:`anatomy_r1.data.vocab.class_similarity`, so that the classes the prior
calls alike also *look* alike and a model's confusions on the benchmark mirror the prior the curriculum
is built on:

1. the dissimilarity ``d = 1 - similarity`` of every pair is turned into a target colour distance
   ``150 * d ** 0.8`` (RGB units; the exponent lifts the smallest distances so the closest pair, cystic
   duct vs. cystic artery, still differs by about 40 units);
2. class mean colours are placed in RGB by weighted metric MDS (SMACOF stress majorisation, weights
   ``1 / target`` so small distances are kept most faithfully), with a weak pull towards a hand-chosen
   surgical anchor colour per class that fixes the otherwise arbitrary rotation of the embedding into a
   plausible palette (liver brown, omentum yellow, gallbladder green, ...);
3. a texture (stripe) frequency comes from the first classical-MDS coordinate of the same matrix, so
   similar classes also share a similar texture;
4. each class is named by the nearest of a few colour prototypes; similar classes may share a name.

Everything is deterministic and cached per class set.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from anatomy_r1.data.synth.scene import Scene
from anatomy_r1.data.vocab import class_similarity

DISTANCE_SCALE = 150.0
DISTANCE_EXPONENT = 0.8
ANCHOR_PULL = 0.005
TEXTURE_FREQ_RANGE = (0.10, 0.30)
"""Stripe frequencies in cycles per pixel (periods of about 3 to 10 px, visible inside a 14-px patch)."""
TEXTURE_AMPLITUDE = 9.0
INSTANCE_JITTER = 4.0
"""Standard deviation (RGB units) of a region's mean colour around its class mean."""
PIXEL_NOISE = 4.0

ANCHORS: dict[str, tuple[int, int, int]] = {
    "liver": (120, 45, 40),
    "gallbladder": (115, 135, 75),
    "cystic_plate": (165, 105, 80),
    "omentum": (225, 195, 95),
    "gut": (220, 140, 135),
    "abdominal_wall_cavity": (185, 75, 95),
    "cystic_duct": (215, 205, 175),
    "cystic_artery": (195, 65, 65),
    "cystic_pedicle": (190, 110, 110),
    "blood_vessel": (150, 40, 55),
    "peritoneum": (210, 165, 150),
    "adhesion": (225, 205, 190),
    "fluid": (160, 140, 60),
}
"""Plausible laparoscopic colours; they orient the embedding, the similarity prior decides distances."""

COLOR_PROTOTYPES: dict[str, tuple[int, int, int]] = {
    "red": (205, 60, 60),
    "brown": (130, 80, 45),
    "yellow": (230, 190, 70),
    "white": (225, 215, 205),
    "pink": (225, 150, 155),
    "orange": (235, 140, 65),
    "green": (110, 150, 80),
    "purple": (160, 100, 160),
    "grey": (150, 150, 150),
}
"""Colour names and the RGB each stands for; a class takes the name of the nearest prototype."""

BACKGROUND = (95, 38, 42)
INSTRUMENT_GREY = 178.0


@dataclass(frozen=True)
class ClassAppearance:
    """How a class is drawn: mean colour, stripe frequency, and the colour name questions use."""

    label: str
    rgb: tuple[float, float, float]
    texture_freq: float
    color_name: str


def _classical_mds(target: np.ndarray, k: int) -> np.ndarray:
    n = target.shape[0]
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (target**2) @ j
    w, v = np.linalg.eigh(b)
    order = np.argsort(w)[::-1][:k]
    coords = v[:, order] * np.sqrt(np.maximum(w[order], 0.0))
    # Fix the sign so the result does not depend on the eigen-solver's choice.
    for c in range(coords.shape[1]):
        if coords[np.argmax(np.abs(coords[:, c])), c] < 0:
            coords[:, c] *= -1
    return coords


def _anchored_smacof(target: np.ndarray, anchors: np.ndarray, pull: float, iters: int = 500) -> np.ndarray:
    """Minimise sum w_ij (|x_i - x_j| - t_ij)^2 + pull * sum |x_i - a_i|^2, starting at the anchors."""
    n = target.shape[0]
    off = ~np.eye(n, dtype=bool)
    w = np.zeros_like(target)
    w[off] = 1.0 / np.maximum(target[off], 1e-6)
    v = -w.copy()
    np.fill_diagonal(v, w.sum(axis=1))
    solve = np.linalg.inv(v + pull * np.eye(n))
    x = anchors.astype(float).copy()
    for _ in range(iters):
        d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
        b = np.zeros_like(target)
        b[off] = -w[off] * target[off] / np.maximum(d[off], 1e-9)
        np.fill_diagonal(b, -b.sum(axis=1))
        x = solve @ (b @ x + pull * anchors)
    return x


def _name_color(rgb: np.ndarray) -> str:
    names = list(COLOR_PROTOTYPES)
    protos = np.array([COLOR_PROTOTYPES[n] for n in names], dtype=float)
    return names[int(np.argmin(np.linalg.norm(protos - rgb, axis=1)))]


def class_appearance(classes: Sequence[str]) -> dict[str, ClassAppearance]:
    """Appearance of every class in ``classes``, derived from the similarity prior (see module doc)."""
    return dict(_class_appearance(tuple(sorted(set(classes)))))


@cache
def _class_appearance(labels: tuple[str, ...]) -> tuple[tuple[str, ClassAppearance], ...]:
    n = len(labels)
    dis = np.array([[1.0 - class_similarity(a, b) for b in labels] for a in labels])
    target = DISTANCE_SCALE * dis**DISTANCE_EXPONENT
    anchors = np.array([ANCHORS.get(lab, (170, 110, 100)) for lab in labels], dtype=float)
    rgb = np.clip(_anchored_smacof(target, anchors, ANCHOR_PULL), 20.0, 240.0)
    rgb = np.round(rgb, 1)
    if n > 1:
        first = _classical_mds(dis, 1)[:, 0]
        span = float(first.max() - first.min()) or 1.0
        unit = (first - first.min()) / span
    else:
        unit = np.zeros(1)
    lo, hi = TEXTURE_FREQ_RANGE
    out = []
    for i, lab in enumerate(labels):
        color = (float(rgb[i, 0]), float(rgb[i, 1]), float(rgb[i, 2]))
        freq = round(float(lo + (hi - lo) * unit[i]), 4)
        out.append((lab, ClassAppearance(lab, color, freq, _name_color(rgb[i]))))
    return tuple(out)


# --- rendering ----------------------------------------------------------------------------------------


def _cell_box(row: int, col: int, size: int) -> tuple[int, int, int, int]:
    """Pixel bounds ``(y0, y1, x0, x1)`` of a grid cell."""
    edges = [round(k * size / 3) for k in range(4)]
    return edges[row], edges[row + 1], edges[col], edges[col + 1]


def _smooth_field(rng: np.random.Generator, size: int, knots: int = 5) -> np.ndarray:
    """Low-frequency random field in about [-1, 1] by bilinear interpolation of a coarse grid."""
    grid = rng.uniform(-1.0, 1.0, (knots, knots))
    pos = np.linspace(0, knots - 1, size)
    lo = np.minimum(np.floor(pos).astype(int), knots - 2)
    frac = pos - lo
    interp = np.zeros((size, knots))
    interp[np.arange(size), lo] = 1 - frac
    interp[np.arange(size), lo + 1] = frac
    return interp @ grid @ interp.T


def _draw_region(
    img: np.ndarray, box: tuple[int, int, int, int], app: ClassAppearance, rng: np.random.Generator
) -> None:
    """Paint a wobbly blob filling most of its cell, with class colour, stripes and shading."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    cy = (h - 1) / 2 + rng.uniform(-0.04, 0.04) * h
    cx = (w - 1) / 2 + rng.uniform(-0.04, 0.04) * w
    ry = rng.uniform(0.40, 0.47) * h
    rx = rng.uniform(0.40, 0.47) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    wobble = 1.0
    for k in (2, 3, 5):
        wobble = wobble + rng.uniform(0.0, 0.06) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    rho = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) / wobble
    alpha = np.clip((1.0 - rho) * min(rx, ry) + 0.5, 0.0, 1.0)[..., None]

    mean = np.asarray(app.rgb) + rng.normal(0.0, INSTANCE_JITTER, 3)
    angle = rng.uniform(0, np.pi)
    phase = rng.uniform(0, 2 * np.pi)
    stripes = TEXTURE_AMPLITUDE * np.sin(
        2 * np.pi * app.texture_freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase
    )
    light = rng.uniform(-1, 1, 2)
    shading = 1.0 + 0.05 * (light[0] * dx / max(rx, 1) + light[1] * dy / max(ry, 1))
    region = mean[None, None, :] * shading[..., None] + stripes[..., None]
    patch = img[y0:y1, x0:x1]
    patch[...] = patch * (1 - alpha) + region * alpha


# Jaw segments of each instrument, relative to the tip: (angle offset in radians, length in cell units).
_JAWS: dict[str, tuple[tuple[float, float], ...]] = {
    "grasper": ((0.35, 0.22), (-0.35, 0.22)),
    "bipolar": ((0.18, 0.20), (-0.18, 0.20)),
    "clipper": ((0.5, 0.16), (-0.5, 0.16)),
    "scissors": ((0.12, 0.28), (-0.12, 0.28)),
    "hook": ((np.pi / 2, 0.14),),
    "irrigator": (),
}
_SHAFT_WIDTH = {"irrigator": 0.16, "clipper": 0.13}


def _segment_distance(yy: np.ndarray, xx: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    denom = float(ab @ ab) or 1e-9
    t = np.clip(((xx - a[0]) * ab[0] + (yy - a[1]) * ab[1]) / denom, 0.0, 1.0)
    px = a[0] + t * ab[0]
    py = a[1] + t * ab[1]
    return np.hypot(xx - px, yy - py)


def _draw_instrument(
    img: np.ndarray,
    label: str,
    tip: np.ndarray,
    direction: np.ndarray,
    length: float,
    cell: float,
    rng: np.random.Generator,
) -> None:
    """Paint a thin silver tool: a shaft ending at ``tip`` plus label-specific jaws beyond the tip.

    ``direction`` points from the tip back along the shaft. Shading is brightest along the shaft's axis,
    which reads as a metal cylinder at this resolution. Only the tool's bounding box is computed.
    """
    size = img.shape[0]
    width = _SHAFT_WIDTH.get(label, 0.10) * cell
    end = tip + direction * length
    forward = -direction
    base_angle = np.arctan2(forward[1], forward[0])
    jaws = []
    for offset, jaw_len in _JAWS.get(label, ()):
        ang = base_angle + offset
        jaws.append(tip + np.array([np.cos(ang), np.sin(ang)]) * jaw_len * cell)
    pts = np.array([tip, end, *jaws])
    x0, y0 = np.maximum(np.floor(pts.min(axis=0) - width - 1), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(pts.max(axis=0) + width + 2), size).astype(int)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
    dist = _segment_distance(yy, xx, tip, end) / (width / 2)
    for jaw_end in jaws:
        dist = np.minimum(dist, _segment_distance(yy, xx, tip, jaw_end) / (width * 0.35))
    alpha = np.clip((1.0 - dist) * width / 2 + 0.5, 0.0, 1.0)[..., None]
    grey = INSTRUMENT_GREY + rng.normal(0.0, 5.0) + 40.0 * np.clip(1.0 - dist, 0.0, 1.0)
    metal = np.stack([grey, grey, grey * 1.03], axis=-1)
    patch = img[y0:y1, x0:x1]
    patch[...] = patch * (1 - alpha) + metal * alpha


def render_scene(
    scene: Scene,
    appearance: dict[str, ClassAppearance],
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw ``scene`` as a ``size x size`` RGB uint8 array: tissue background, regions, then tools."""
    img = np.empty((size, size, 3), dtype=float)
    img[...] = BACKGROUND
    img += 18.0 * _smooth_field(rng, size)[..., None]
    img += 6.0 * np.stack([_smooth_field(rng, size, 4) for _ in range(3)], axis=-1)

    for obj in scene.anatomy:
        _draw_region(img, _cell_box(*obj.cell, size), appearance[obj.label], rng)

    cell = size / 3
    centres = {o.id: (np.array(o.cell[::-1], dtype=float) + 0.5) * cell for o in scene.objects}
    reaches = dict(scene.within)
    for obj in scene.instruments:
        own = centres[obj.id]
        if obj.id in reaches:
            target = centres[reaches[obj.id]]
            toward = own - target
            toward /= np.linalg.norm(toward)
            tip = target + toward * 0.22 * cell
            length = float(np.linalg.norm(own - tip)) + 0.45 * cell
            direction = toward
        else:
            ang = rng.uniform(0, 2 * np.pi)
            direction = np.array([np.cos(ang), np.sin(ang)])
            tip = own - direction * 0.3 * cell
            length = 0.75 * cell
        _draw_instrument(img, obj.label, tip, direction, length, cell, rng)

    img += PIXEL_NOISE * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode as PNG with fixed options and no metadata chunks, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()
