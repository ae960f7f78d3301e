"""The ablation runner: config validation, a micro end-to-end experiment, and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from anatomy_r1.errors import ConfigError
from anatomy_r1.pipelines.experiment import run as ex_run
from anatomy_r1.pipelines.experiment.config import KNOWN_METHODS, load_experiment
from anatomy_r1.pipelines.experiment.plan import plan_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "experiments"


def _write(path: Path, obj: dict) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return path


def _micro(env: dict[str, Path]) -> dict:
    return {
        "name": "micro",
        "seeds": 1,
        "data": {
            "train": str(env["data"] / "train.jsonl"),
            "test": str(env["data"] / "test.jsonl"),
            "image_root": str(env["data"]),
        },
        "base": {
            "template": "compact_text",
            "model": {"path": str(env["model"])},
            "grpo": {
                "num_generations": 4,
                "per_device_train_batch_size": 8,
                "max_steps": 2,
                "max_completion_length": 8,
                "learning_rate": 1e-4,
            },
            "saving": {"save_steps": 1000000},
            "logging": {"progress_bar": False},
        },
        "eval": {"k": 2, "greedy": True, "batch_size": 16, "limit": 8},
        "methods": {"base": {"train": False}, "grpo": {"set": []}},
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c: c.pop("data"), "data"),
        (lambda c: c.update(bogus=1), "bogus"),
        (lambda c: c["data"].update(synth={"n_train": 10}), "not both"),
        (lambda c: c.update(methods={}), "at least one method"),
        (lambda c: c["methods"].update(bad={"set": ["grpo.nonexistent=1"]}), "method 'bad'"),
        (lambda c: c["methods"].update(bad={"set": ["grpo.max_steps=5"]}), "unequal RL budgets"),
        (lambda c: c["methods"].update(g={"set": ["gpg=true"]}), "scale_rewards"),
        (lambda c: c["methods"].update(bad={"set": ["novalue"]}), "KEY=VALUE"),
        (lambda c: c["eval"].update(k=0, greedy=False), "k >= 1"),
        (lambda c: c["methods"].update({"a b": {}}), "folder name"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, change, match: str) -> None:
    env = {"data": tmp_path, "model": tmp_path}
    cfg = _micro(env)
    change(cfg)
    path = _write(tmp_path / "exp.yaml", cfg)
    with pytest.raises(ConfigError, match=match):
        exp, base_dir = load_experiment(path)
        plan_experiment(exp, base_dir, tmp_path / "out")


def test_unknown_only_method_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "exp.yaml", _micro({"data": tmp_path, "model": tmp_path}))
    exp, base_dir = load_experiment(path)
    with pytest.raises(ConfigError, match="--only"):
        plan_experiment(exp, base_dir, tmp_path / "out", only=["nope"])
    with pytest.raises(ConfigError, match="no such"):
        load_experiment(tmp_path / "missing.yaml")


#: Comparisons with arms of their own rather than the paper's baseline table.
READINGS_ARMS = {
    "base",
    "grpo",
    "dapo",
    "gpg_release",
    "grpo_ascl",
    "grpo_ascl_repeat",
    "grpo_gdqa_in_group",
    "grpo_gdqa_own_groups",
    "anatomy_r1_paper",
    "anatomy_r1_release",
}


def test_shipped_configs_plan(tmp_path: Path) -> None:
    """Every shipped experiment config validates with equal budgets; the baseline-table
    configs carry every known method, the readings comparison its pre-registered arms."""
    files = sorted(CONFIGS.glob("*.yaml"))
    assert {f.stem for f in files} >= {"synthetic", "sgg_vqa_qwen2_5_vl_3b", "readings"}
    for f in files:
        exp, base_dir = load_experiment(f)
        plan = plan_experiment(exp, base_dir, tmp_path / f.stem, seeds=1)
        assert plan.rl_budget, f
        if f.stem == "readings":
            assert set(plan.methods) == READINGS_ARMS, f
            assert not plan.sft_examples
            continue
        assert set(plan.methods) == set(KNOWN_METHODS), f
        assert plan.sft_examples["sft"] >= plan.rl_budget


def test_sft_budget_matches_rl_completions(tmp_path: Path) -> None:
    cfg = _micro({"data": tmp_path, "model": tmp_path})
    cfg["methods"]["sft"] = {"set": ["method=sft", "sft.per_device_train_batch_size=4"]}
    exp, base_dir = load_experiment(_write(tmp_path / "exp.yaml", cfg))
    plan = plan_experiment(exp, base_dir, tmp_path / "out", seeds=2)
    assert plan.seeds == [0, 1] and len(plan.runs) == 6
    assert plan.rl_budget == 16 and plan.sft_examples == {"sft": 16}
    sft = next(r for r in plan.runs if r.method == "sft")
    assert sft.cfg.sft.max_steps == 4


def test_micro_experiment_writes_report_and_resumes(
    tiny_env: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anatomy_r1.cli import main

    path = _write(tmp_path / "exp.yaml", _micro(tiny_env))
    out = tmp_path / "out"
    assert main(["experiment", "--config", str(path), "--out", str(out)]) == 0
    for rel in ("results.md", "summary.json", "base/seed0/done.json", "grpo/seed0/done.json",
                "grpo/seed0/eval/metrics.json", "grpo/seed0/train/metrics.jsonl"):  # fmt: skip
        assert (out / rel).is_file(), rel
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"base", "grpo"}
    grpo = summary["methods"]["grpo"]
    assert grpo["avg_at_k"]["n"] == 1 and 0.0 <= grpo["greedy"]["mean"] <= 1.0
    assert grpo["invalid_gradient"] is not None and summary["methods"]["base"]["invalid_gradient"] is None
    assert summary["budget"]["rl_completions_per_run"] == 16
    for fig in summary["figures"]:
        assert "error" not in fig, fig
        assert (out / fig["file"]).is_file()
    md = (out / "results.md").read_text()
    assert "| GRPO |" in md and "Base (zero-shot)" in md and "Avg@2" in md

    # a rerun trains nothing and evaluates nothing, yet rebuilds the report
    def boom(*a, **k):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(ex_run, "_execute", boom)
    (out / "results.md").unlink()
    assert main(["experiment", "--config", str(path), "--out", str(out)]) == 0
    assert (out / "results.md").is_file()
