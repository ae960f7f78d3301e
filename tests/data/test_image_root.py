"""``--image-root``: one rule for convert, validate, training and evaluation, for every stored path shape.

The rule: an image path is looked up under the root by its longest tail that exists there, down to its
last folder and file name. The release stores ``/CholecT45/data/VIDxx/<frame>.png``, Med-R1 stores
``Images/<dataset>/<file>`` relative to the OmniMedVQA folder, and users point the root at different
levels of their copies; every level that holds the files must work, and the same file must be found by
the converter's check, ``data validate``, and the frame cache training and evaluation read through.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.data.converters.common import ImageChecker
from anatomy_r1.data.images import ImageCache, default_image_root
from anatomy_r1.data.io import image_tails, read_records, resolve_image

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE = FIXTURES / "anatomy_r1_small.json"
FRAMES = FIXTURES / "CholecT45" / "data"
OMNI_IMAGES = FIXTURES / "omnimedvqa" / "Images"


@pytest.fixture
def cholec(tmp_path: Path) -> Path:
    """A user's copy of the frames at ``<tmp>/disk/CholecT45/data/VIDxx/<frame>.png``."""
    dest = tmp_path / "disk" / "CholecT45" / "data"
    shutil.copytree(FRAMES, dest)
    return tmp_path / "disk"


@pytest.fixture
def omni(tmp_path: Path) -> Path:
    """An OmniMedVQA folder (``<tmp>/OmniMedVQA/Images/demo/*.png``) and a Med-R1 split pointing into it."""
    root = tmp_path / "OmniMedVQA"
    shutil.copytree(OMNI_IMAGES, root / "Images")
    items = [
        {
            "image": f"Images/demo/00{i}.png",
            "problem": f"Which organ is shown? A)Liver, B)Spleen, C)Kidney{i}",
            "solution": "<answer> A </answer>",
        }
        for i in range(3)
    ]
    (tmp_path / "Anatomy Identification_test.json").write_text(json.dumps(items), encoding="utf-8")
    return root


def convert(fmt: str, src: Path, out: Path, root: Path | None) -> int:
    extra = [] if root is None else ["--image-root", str(root)]
    return main(["data", "convert", "--format", fmt, str(src), "--out", str(out), *extra])


def validate(path: Path, root: Path | None) -> int:
    extra = [] if root is None else ["--image-root", str(root)]
    return main(["data", "validate", str(path), *extra])


@pytest.mark.parametrize(
    "level",
    ["disk", "disk/CholecT45", "disk/CholecT45/data"],
    ids=["dataset-parent", "dataset", "frame-folders-parent"],
)
def test_release_absolute_paths_are_found_at_every_level_of_the_copy(
    level: str, cholec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's ``--image-root /data/CholecT45/data`` finds ``/CholecT45/data/VIDxx/...``, undoubled."""
    root = tmp_path / level
    out = tmp_path / "train.jsonl"
    assert convert("anatomy-r1", RELEASE, out, root) == 0, capsys.readouterr().err
    assert validate(out, root) == 0, capsys.readouterr().err
    assert "3 valid records; 3 images decoded" in capsys.readouterr().out
    expected = cholec / "CholecT45" / "data" / "VID01" / "000021.png"
    rec = read_records(out)[0]
    assert rec.images == ["/CholecT45/data/VID01/000021.png"]  # the stored path is never rewritten
    assert resolve_image(rec.images[0], root) == expected
    assert ImageChecker(root, allow_missing=False).resolve(rec.images[0]) == str(expected)


@pytest.mark.parametrize("level", ["OmniMedVQA", "OmniMedVQA/Images"], ids=["omnimedvqa-root", "images"])
def test_medr1_relative_paths_are_found_from_the_omnimedvqa_root_or_its_images_folder(
    level: str, omni: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / level
    out = tmp_path / "med.jsonl"
    assert convert("medr1", tmp_path / "Anatomy Identification_test.json", out, root) == 0
    assert validate(out, root) == 0, capsys.readouterr().err
    recs = read_records(out)
    assert [r.images for r in recs] == [[f"Images/demo/00{i}.png"] for i in range(3)]
    for i, r in enumerate(recs):
        assert resolve_image(r.images[0], root) == omni / "Images" / "demo" / f"00{i}.png"


def test_training_reads_the_frame_the_converter_checked(cholec: Path, tmp_path: Path) -> None:
    """The frame cache (training and evaluation) decodes exactly the file ``convert`` found."""
    from PIL import Image

    root = tmp_path / "disk" / "CholecT45" / "data"
    out = tmp_path / "train.jsonl"
    assert convert("anatomy-r1", RELEASE, out, root) == 0
    cache = ImageCache(default_image_root(str(out), str(root)))
    for rec in read_records(out):
        checked = ImageChecker(root, allow_missing=False).resolve(rec.images[0])
        with Image.open(checked) as im:
            want = im.convert("RGB").tobytes()
        assert cache.load(rec.images[0], f"item {rec.id!r}").tobytes() == want


def test_longest_existing_tail_wins_and_the_last_folder_is_never_dropped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "CholecT45" / "data" / "VID01").mkdir(parents=True)
    (root / "VID01").mkdir(parents=True)
    (root / "VID02").mkdir(parents=True)
    for p in (root / "CholecT45/data/VID01/000021.png", root / "VID01/000021.png", root / "VID02/000099.png"):
        p.write_bytes(b"x")
    (root / "000099.png").write_bytes(b"x")
    checker = ImageChecker(root, allow_missing=False)
    # Both the whole path and a shorter tail exist: the whole path wins, deterministically.
    full = "/CholecT45/data/VID01/000021.png"
    assert resolve_image(full, root) == root / "CholecT45" / "data" / "VID01" / "000021.png"
    assert checker.resolve(full) == str(root / "CholecT45" / "data" / "VID01" / "000021.png")
    # A frame of VID01 is never taken from another video's folder or from the root by file name alone.
    assert checker.locate("/CholecT45/data/VID01/000099.png") == (
        str(root / "CholecT45" / "data" / "VID01" / "000099.png"),
        False,
    )
    assert not resolve_image("/CholecT45/data/VID01/000099.png", root).exists()
    assert image_tails(" /CholecT45/data/VID66/000791.png") == [
        "CholecT45/data/VID66/000791.png",
        "data/VID66/000791.png",
        "VID66/000791.png",
    ]
    assert image_tails("Images/MIAS/mdb188.png") == ["Images/MIAS/mdb188.png", "MIAS/mdb188.png"]
    assert image_tails("x.png") == ["x.png"]


def test_an_absolute_path_that_exists_is_used_unchanged(tmp_path: Path) -> None:
    frame = tmp_path / "elsewhere" / "VID01" / "000021.png"
    frame.parent.mkdir(parents=True)
    frame.write_bytes(b"x")
    assert resolve_image(str(frame), tmp_path / "root") == frame
    assert ImageChecker(tmp_path / "root", allow_missing=False).locate(str(frame)) == (str(frame), True)


def test_a_missing_image_names_the_stored_path_the_root_and_what_was_tried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    out = tmp_path / "o.jsonl"
    assert convert("anatomy-r1", RELEASE, out, root) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"error: {RELEASE}:item 0: image not found: /CholecT45/data/VID01/000021.png")
    assert f"under {root}" in first
    assert str(root / "CholecT45" / "data" / "VID01" / "000021.png") in first
    assert str(root / "VID01" / "000021.png") in first
    assert not out.exists()


def test_without_image_root_convert_and_validate_look_where_training_looks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No root: images are relative to the output (convert) or the file (validate), as in training."""
    data = tmp_path / "data"
    shutil.copytree(OMNI_IMAGES, data / "Images")
    items = [
        {
            "image": "Images/demo/000.png",
            "problem": "Q? A)Liver, B)Spleen",
            "solution": "<answer> A </answer>",
        }
    ]
    src = tmp_path / "in" / "split.json"
    src.parent.mkdir()
    src.write_text(json.dumps(items), encoding="utf-8")
    out = data / "split.jsonl"
    elsewhere = tmp_path / "elsewhere.jsonl"
    assert convert("medr1", src, out, None) == 0, capsys.readouterr().err
    assert validate(out, None) == 0, capsys.readouterr().err
    assert default_image_root(str(out), None) == str(data)
    assert convert("medr1", src, elsewhere, None) == 2
    assert "image not found" in capsys.readouterr().err and not elsewhere.exists()


def test_the_converter_check_and_the_training_resolver_agree_on_every_path_shape(tmp_path: Path) -> None:
    """The converter's cached check and ``resolve_image`` (training, evaluation) give the same answer."""
    for rel in ("CholecT45/data/VID01/000021.png", "data/VID02/000147.png", "Images/demo/000.png", "x.png"):
        (tmp_path / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / rel).write_bytes(b"x")
    stored = [
        "/CholecT45/data/VID01/000021.png",
        " /CholecT45/data/VID02/000147.png ",
        "/CholecT45/data/VID03/000001.png",
        "Images/demo/000.png",
        "Images/demo/404.png",
        "./Images//demo/000.png",
        "x.png",
        "VID01/000021.png",
        str(tmp_path / "tree" / "x.png"),
    ]
    roots = ["tree", "tree/", "tree/CholecT45", "tree/CholecT45/data", "tree/Images", "nowhere"]
    for root in (tmp_path / r if not r.endswith("/") else f"{tmp_path / r[:-1]}/" for r in roots):
        checker = ImageChecker(root, allow_missing=True)
        for path in stored * 2:  # twice: the second pass runs on the checker's caches
            found, ok = checker.locate(path)
            assert Path(found) == resolve_image(path, root), (root, path)
            assert ok == resolve_image(path, root).is_file(), (root, path)
