"""What a run says about itself: the start-up summary, GDQA that cannot act, the model card."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main
from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import load_config


def test_gdqa_difficulty_for_unseen_items_is_relative_by_default() -> None:
    g = load_config(None, []).gdqa
    assert (g.s_q_quantile, g.s_q_threshold) == (0.5, None)
    g = load_config(None, ["gdqa.s_q_threshold=0.3"]).gdqa  # an absolute threshold replaces the quantile
    assert (g.s_q_quantile, g.s_q_threshold) == (None, 0.3)
    with pytest.raises(ConfigError, match=r"set one of s_q_quantile .* and s_q_threshold"):
        load_config(None, ["gdqa.s_q_threshold=0.3", "gdqa.s_q_quantile=0.2"])


def test_the_quantile_rule_makes_items_difficult_on_any_backends_scale() -> None:
    """The same setting starts the same share of items as difficult whatever the backend's scale."""
    from anatomy_r1.augment.group_policy import unseen_threshold
    from anatomy_r1.data.schema import Record

    cfg = load_config(None, [])
    for scale in (0.45, 0.9):  # minilm's and the prior's largest S(q) on the release
        recs = [
            Record(
                id=f"q{i}",
                images=[],
                question="?",
                options=["a", "b"],
                answer_index=0,
                answer="a",
                source="t",
            )
            for i in range(10)
        ]
        for i, r in enumerate(recs):
            r.meta["s_q"] = scale * i / 9
        t = unseen_threshold(cfg.gdqa, recs)
        assert sum(r.meta["s_q"] >= t for r in recs) == 5


@pytest.mark.slow
def test_train_says_what_it_will_do_and_names_its_base_in_the_model_card(
    tmp_path: Path,
    write_config: Callable[..., Path],
    tiny_model: Path,
    capsys: pytest.CaptureFixture[str],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    out = tmp_path / "run"
    cfg = write_config(
        out,
        grpo={"max_steps": 3},
        gdqa={"enabled": True},
        curriculum={"enabled": True},
        saving={"save_steps": 1},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    printed = capsys.readouterr().out
    assert "what this run will do" in printed
    summary = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    lines = summary["lines"]
    assert lines["data"].startswith("48 questions from")
    assert "matrix:prior" in lines["S(q)"] and "pacing linear" in lines["curriculum"]
    assert "0.5 quantile" in lines["GDQA"] and "; 24 of 48 at the start" in lines["GDQA"]  # the median
    assert "one completion per row" in lines["rollouts"] and "fp32" in lines["precision"]
    assert summary["warnings"] == []
    assert any(r["gdqa/augmented_fraction"] > 0 for r in read_metrics(out / "metrics.jsonl"))
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "[None]" not in card and str(tiny_model) in card


@pytest.mark.slow
def test_gdqa_that_can_vary_nothing_is_said_at_start_while_running_and_at_the_end(
    tmp_path: Path, write_config: Callable[..., Path], tiny_data: Path
) -> None:
    """Re-referring needs a scene graph; these records have none, so GDQA cannot act."""
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_data / "train.jsonl", bare / "train.jsonl")  # no scenes/ beside it
    out = tmp_path / "run"
    cfg = write_config(
        out,
        data={"train": str(bare / "train.jsonl"), "image_root": str(tiny_data)},
        grpo={"max_steps": 3},
        gdqa={"enabled": True, "kinds": ["rerefer"], "idle_warning_steps": 2},
    )
    r = subprocess.run(
        [sys.executable, "-m", "anatomy_r1.cli", "train", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warning: GDQA: the kinds rerefer gave none of" in r.stdout + r.stderr
    assert "rerefer needs scene facts" in r.stdout + r.stderr
    assert "warning: GDQA has augmented no group for 2 steps" in r.stderr
    assert "GDQA was enabled but augmented no group" in r.stderr
    # Library notices that say nothing about the run stay out of its output.
    assert "gradient_checkpointing" not in r.stderr and "FutureWarning" not in r.stderr
    warnings = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))["warnings"]
    assert any("GDQA will augment nothing" in w for w in warnings)


def test_gdqa_acts_on_a_group_it_rewords_or_draws_as_a_variant_row(tmp_path: Path) -> None:
    """Variant rows are never reworded, so the two shares add up; a step logging neither says nothing."""
    from types import SimpleNamespace

    from anatomy_r1.cli.train import summarize_metrics
    from anatomy_r1.training.callbacks import GDQAIdleCallback
    from anatomy_r1.training.summary import gdqa_acting_fraction

    assert gdqa_acting_fraction({"gdqa/augmented_fraction": 0.25, "gdqa/variant_row_fraction": 0.5}) == 0.75
    assert gdqa_acting_fraction({"gdqa/augmented_fraction": 0.0}) == 0.0  # a run logged before the split
    assert gdqa_acting_fraction({"loss": 1.0}) is None
    p = tmp_path / "metrics.jsonl"
    p.write_text(
        '{"step": 1, "gdqa/augmented_fraction": 0.0, "gdqa/variant_row_fraction": 0.5}\n'
        '{"step": 2, "gdqa/augmented_fraction": 0.0, "gdqa/variant_row_fraction": 0.0}\n',
        encoding="utf-8",
    )
    assert summarize_metrics(p)["gdqa"] == [0.5, 0.0]

    idle = GDQAIdleCallback(idle_steps=2)
    for step, share in enumerate([0.5, 0.0, 0.5, 0.0], start=1):
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        logs = {"gdqa/augmented_fraction": 0.0, "gdqa/variant_row_fraction": share}
        idle.on_log(None, state, None, logs=logs)
    assert not idle.warned  # never two steps in a row without a variant row


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ([], None),
        (["gpg=true", "grpo.loss_type=bnpo", "grpo.scale_rewards=none"], None),
        (["dynamic_sampling=true"], "dynamic_sampling refills the groups it drops"),
        (["dynamic_sampling=true", "gpg=true", "grpo.loss_type=bnpo", "grpo.scale_rewards=none"], "refills"),
        (
            ["dynamic_sampling=true", "gpg=release", "grpo.loss_type=bnpo", "grpo.scale_rewards=group"],
            "gpg: release resamples whole batches",
        ),
    ],
)
def test_dynamic_sampling_is_said_to_draw_outside_the_curriculum(
    overrides: list[str], said: str | None
) -> None:
    from anatomy_r1.training.methods import trainer_class_for
    from anatomy_r1.training.summary import refill_bypasses_curriculum

    cls = trainer_class_for(load_config(None, overrides))
    warning = refill_bypasses_curriculum(object.__new__(cls))  # the class decides; nothing is built
    if said is None:
        assert warning is None
    else:
        assert warning is not None and said in warning and "outside the curriculum's pacing" in warning


@pytest.mark.slow
def test_a_curriculum_run_with_dynamic_sampling_warns_at_start(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    cfg = write_config(
        out,
        grpo={"max_steps": 1},
        curriculum={"enabled": True, "backend": "matrix:prior"},
        dynamic_sampling=True,
    )
    assert main(["train", "--config", str(cfg)]) == 0
    warnings = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))["warnings"]
    (warning,) = [w for w in warnings if w.startswith("curriculum:")]
    assert "drawn uniformly from the whole training set, outside the curriculum's pacing" in warning
    assert f"warning: {warning}" in capsys.readouterr().out
