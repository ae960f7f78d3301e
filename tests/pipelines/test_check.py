"""``anatomy-r1 check`` on every shipped config and every recipe docs/scaling.md shows.

Each check trains real steps through ``run_grpo``/``run_sft``; the tests run one step with completions
capped at 32 tokens (``--set grpo.max_completion_length=32``) to keep the suite's time, which changes
nothing the check decides.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from anatomy_r1.cli import main

REPO = Path(__file__).resolve().parents[2]
FAST = ["--steps", "1", "--set", "grpo.max_completion_length=32"]


def _docs_checks() -> list[str]:
    text = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.startswith("anatomy-r1 check ")]


def _run(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: int = 1
) -> tuple[int, list[dict[str, Any]]]:
    monkeypatch.chdir(REPO)  # the docs' paths are relative to the repository root
    out = tmp_path / "check.json"
    rc = main([*argv, "--steps", str(steps), *FAST[2:], "--json", str(out)])
    return rc, json.loads(out.read_text(encoding="utf-8")) if out.is_file() else []


def test_docs_check_every_shipped_recipe_and_launcher() -> None:
    lines = " ".join(_docs_checks())
    shipped = sorted((REPO / "configs" / "recipes").glob("*.yaml")) + sorted(
        (REPO / "configs" / "accelerate").glob("*.yaml")
    )
    assert shipped
    for f in shipped:
        assert str(f.relative_to(REPO)) in lines, f"docs/scaling.md checks no recipe with {f.name}"


def test_docs_recipe_block_is_the_shipped_recipe() -> None:
    text = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    block = re.search(r"## 1\. The run config.*?```yaml\n(.*?)```", text, flags=re.S)
    assert block is not None
    shipped = yaml.safe_load(
        (REPO / "configs" / "recipes" / "qwen7b_ascl_gdqa.yaml").read_text(encoding="utf-8")
    )
    assert yaml.safe_load(block.group(1)) == shipped


@pytest.mark.slow
@pytest.mark.parametrize("line", _docs_checks(), ids=lambda x: x.split("--config ")[1].replace(" ", "_")[:90])
def test_every_docs_recipe_passes_check(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ASCL starts on the easiest questions, which GDQA leaves alone; three steps reach the harder ones.
    steps = 3 if "vllm_mode=server" in line else 1
    rc, results = _run(shlex.split(line)[1:], tmp_path, monkeypatch, steps)
    assert rc == 0 and results and all(r["ok"] for r in results)
    for r in results:
        if r["skipped"]:
            continue
        assert r["measured"]["steps"] == steps
        assert r["measured"]["image_tokens_per_frame"]["frames"] > 0
        lines = r["summary"].get("lines", {})
        if "grpo.vllm_mode=server" in line:
            assert "one request per member where GDQA varied them" in lines["rollouts"]
            assert r["measured"]["per_member_requests"] > 0  # GDQA varied a group, and TRL asked per member
            assert r["measured"]["gdqa_augmented_fraction"] > 0
        if "deepspeed_zero3" in line and "qwen7b_ascl" in line:
            assert any("DeepSpeed ZeRO-3 is not started" in s for s in r["swaps"])
            assert "8 processes, DeepSpeed ZeRO-3" in lines["launch"]
            assert any("per_device_train_batch_size 8 -> 64" in s for s in r["swaps"])
        if "qwen3b_one_gpu.yaml" in line and "--accelerate-config" not in line:
            assert "weights loaded in fp32, compute bf16 autocast" in lines["precision"]
            assert r["measured"]["weights_moved"] > 0.5  # fp32 master weights take the lr 1e-6 step


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "experiments").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_experiment_config_passes_check(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, results = _run(["check", "--config", str(path)], tmp_path, monkeypatch)
    assert rc == 0
    trained = [r for r in results if not r["skipped"]]
    assert len(trained) >= 7 and all(r["ok"] and r["measured"]["steps"] == 1 for r in trained)
    by_name = {r["name"]: r for r in trained}
    gdqa = next(name for name in by_name if name.startswith("grpo_gdqa"))
    assert by_name[gdqa]["measured"]["gdqa_augmented_fraction"] >= 0
    assert "off" in by_name["grpo"]["summary"]["lines"]["GDQA"]
    if path.stem == "readings":  # own-group variant rows join the data on every path that trains
        assert "GDQA variant rows" in by_name["anatomy_r1_release"]["summary"]["lines"]["data"]
        assert "ReleaseGPGTrainer" in by_name["gpg_release"]["summary"]["lines"]["method"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--set", "model.dtype=fp16"], "model.dtype: fp16 is refused for training"),
        (["--set", "grpo.per_device_train_batch_size=3"], "not a multiple of num_generations 8"),
    ],
)
def test_unsafe_recipes_are_refused_with_one_line_and_exit_2(
    overrides: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["check", "--config", str(REPO / "configs/recipes/qwen3b_one_gpu.yaml"), *overrides])
    assert rc == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]


def test_fsdp1_with_a_frozen_tower_is_refused_by_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = yaml.safe_load((REPO / "configs/accelerate/fsdp2.yaml").read_text(encoding="utf-8"))
    cfg["fsdp_config"]["fsdp_version"] = 1
    fsdp1 = tmp_path / "fsdp1.yaml"
    fsdp1.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    recipe = str(REPO / "configs/recipes/qwen7b_ascl_gdqa.yaml")
    assert main(["check", "--config", recipe, "--accelerate-config", str(fsdp1)]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "model.freeze_vision with FSDP1" in errors[0]


def test_a_data_file_that_is_not_there_is_one_error_line_not_a_synthetic_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "tarin.jsonl"
    recipe = str(REPO / "configs/recipes/qwen3b_one_gpu.yaml")
    out = tmp_path / "check.json"
    assert main(["check", "--config", recipe, "--data", str(typo), *FAST, "--json", str(out)]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: --data ") and str(typo) in errors[0]
    assert not out.exists()
