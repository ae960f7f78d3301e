"""Frame rendering for the synthetic benchmark.

A region is painted in the prototype colour of *its own* colour word (drawn per instance from its class's
appearance distribution, :mod:`anatomy_r1.data.synth.appearance`), with a small jitter, shading and a
stripe texture whose frequency is random per instance. Nothing in the pixels depends on the class except
through that word, so the appearance model's oracle is also the best any reader of the frame can do.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from anatomy_r1.data.synth.appearance import WORDS
from anatomy_r1.data.synth.scene import Scene

TEXTURE_FREQ_RANGE = (0.10, 0.30)
"""Stripe frequencies in cycles per pixel (periods of about 3 to 10 px, visible inside a 14-px patch)."""
TEXTURE_AMPLITUDE = 6.0
INSTANCE_JITTER = 6.0
"""Standard deviation (RGB units) of a region's mean colour around its word's prototype."""
PIXEL_NOISE = 4.0

BACKGROUND = (95, 38, 42)
INSTRUMENT_GREY = 178.0


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
    img: np.ndarray, box: tuple[int, int, int, int], word: str, rng: np.random.Generator
) -> None:
    """Paint a wobbly blob filling most of its cell in its colour word's prototype, striped and shaded."""
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

    mean = np.asarray(WORDS[word], dtype=float) + rng.normal(0.0, INSTANCE_JITTER, 3)
    angle = rng.uniform(0, np.pi)
    phase = rng.uniform(0, 2 * np.pi)
    freq = rng.uniform(*TEXTURE_FREQ_RANGE)
    stripes = TEXTURE_AMPLITUDE * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
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


def render_scene(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``scene`` as a ``size x size`` RGB uint8 array: tissue background, regions, then tools."""
    img = np.empty((size, size, 3), dtype=float)
    img[...] = BACKGROUND
    img += 18.0 * _smooth_field(rng, size)[..., None]
    img += 6.0 * np.stack([_smooth_field(rng, size, 4) for _ in range(3)], axis=-1)

    for obj in scene.anatomy:
        _draw_region(img, _cell_box(*obj.cell, size), obj.color, rng)

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
