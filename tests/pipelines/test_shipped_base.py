"""The shipped ``builtin:tiny-base`` is the model the library's recipe builds, and is used only then."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.pipelines.base_model import (
    SHIPPED_FILES,
    BaseRecipe,
    ensure_base_model,
    resolve_model_path,
    shipped_base_dir,
    shipped_model,
)


def test_the_shipped_model_was_built_from_the_current_recipe() -> None:
    """Fails when the recipe (or anything in its key) changes without `anatomy-r1 build-base` re-run."""
    manifest = json.loads((shipped_base_dir() / "recipe.json").read_text("utf-8"))
    assert manifest["recipe"] == json.loads(json.dumps(asdict(BaseRecipe())))
    assert manifest["key"] == BaseRecipe().key()
    assert shipped_model() == shipped_base_dir()


def test_a_changed_file_or_another_recipe_is_not_used(tmp_path: Path) -> None:
    copy = tmp_path / "tiny-base"
    shutil.copytree(shipped_base_dir(), copy)
    assert shipped_model(folder=copy) == copy
    assert shipped_model(replace(BaseRecipe(), sft_steps=BaseRecipe().sft_steps + 1), folder=copy) is None
    cfg = copy / "tokenizer_config.json"
    cfg.write_text(cfg.read_text("utf-8") + " ", "utf-8")
    assert shipped_model(folder=copy) is None
    (copy / "recipe.json").write_text("{not json", "utf-8")
    assert shipped_model(folder=copy) is None


def test_builtin_resolves_to_the_shipped_model_without_building(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ANATOMY_R1_CACHE", str(tmp_path / "cache"))
    assert resolve_model_path("builtin:tiny-base") == shipped_base_dir()
    assert ensure_base_model() == shipped_base_dir()
    assert not (tmp_path / "cache").exists()  # nothing was built or cached

    from anatomy_r1.models.loading import load_model_and_processor

    model, _processor = load_model_and_processor(shipped_base_dir())
    assert model.config.model_type == "qwen2_5_vl"
    assert sorted(p.name for p in shipped_base_dir().iterdir()) == sorted([*SHIPPED_FILES, "recipe.json"])


def test_build_base_refuses_an_existing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine", "utf-8")
    assert main(["build-base", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert (out / "keep.txt").read_text("utf-8") == "mine"
