"""The decoded-frame cache: bounded in bytes, least recently used out, and every frame still readable."""

from __future__ import annotations

from pathlib import Path

import pytest

from anatomy_r1.data.images import ImageCache, decoded_bytes
from anatomy_r1.errors import DataError

W, H = 40, 30
FRAME = W * H * 4  # Pillow keeps an RGB pixel in 4 bytes


def frames(root: Path, n: int) -> list[str]:
    from PIL import Image

    names = []
    for i in range(n):
        name = f"f{i}.png"
        Image.new("RGB", (W, H), (10 * i, 255 - 10 * i, 7)).save(root / name)
        names.append(name)
    return names


def test_decoded_bytes_is_what_pillow_holds(tmp_path: Path) -> None:
    from PIL import Image

    assert decoded_bytes(Image.new("RGB", (W, H))) == FRAME
    assert decoded_bytes(Image.new("L", (W, H))) == W * H


def test_cache_stays_within_its_byte_bound_and_evicts_least_recently_used(tmp_path: Path) -> None:
    names = frames(tmp_path, 6)
    cache = ImageCache(tmp_path, max_bytes=3 * FRAME + FRAME // 2)  # room for three frames
    for name in names[:3]:
        cache.load(name, "item")
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 3 and cache.nbytes == 3 * FRAME
    cache.load(names[0], "item")  # f0 is now the most recently used; f1 the least
    assert cache.hits == 1
    cache.load(names[3], "item")
    assert names[1] not in cache and all(n in cache for n in (names[0], names[2], names[3]))
    for name in names[4:] + names[:2]:
        cache.load(name, "item")
        assert cache.nbytes <= cache.max_bytes and len(cache) == 3
    assert [n for n in names if n in cache] == [names[0], names[1], names[5]]


def test_an_evicted_frame_is_decoded_again_with_the_same_pixels(tmp_path: Path) -> None:
    names = frames(tmp_path, 3)
    cache = ImageCache(tmp_path, max_bytes=FRAME)  # one frame
    first = cache.load(names[0], "item").copy()
    cache.load(names[1], "item")
    assert names[0] not in cache
    again = cache.load(names[0], "item")
    assert again.size == (W, H) and again.tobytes() == first.tobytes()
    assert cache.misses == 3 and cache.hits == 0


def test_zero_bound_never_keeps_a_frame_and_a_frame_above_the_bound_is_not_kept(tmp_path: Path) -> None:
    names = frames(tmp_path, 2)
    off = ImageCache(tmp_path, max_bytes=0)
    for _ in range(2):
        assert off.load(names[0], "item").size == (W, H)
    assert len(off) == 0 and off.nbytes == 0 and off.misses == 2
    small = ImageCache(tmp_path, max_bytes=FRAME - 1)
    small.load(names[1], "item")
    assert len(small) == 0
    with pytest.raises(ValueError):
        ImageCache(tmp_path, max_bytes=-1)


def test_from_mb_uses_mebibytes_and_the_default(tmp_path: Path) -> None:
    from anatomy_r1.data.images import DEFAULT_IMAGE_CACHE_MB

    assert ImageCache.from_mb(tmp_path, 3).max_bytes == 3 * 2**20
    assert ImageCache.from_mb(tmp_path, None).max_bytes == DEFAULT_IMAGE_CACHE_MB * 2**20


def test_broken_and_missing_frames_name_the_item_and_the_file(tmp_path: Path) -> None:
    (name,) = frames(tmp_path, 1)
    data = (tmp_path / name).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cache = ImageCache(tmp_path)
    with pytest.raises(DataError, match=r"item 'q1': cannot decode image .*cut\.png"):
        cache.load("cut.png", "item 'q1'")
    with pytest.raises(DataError, match=r"item 'q2': image not found: .*gone\.png"):
        cache.load("gone.png", "item 'q2'")
