"""The release's reading of the method, as configuration, on real TRL steps.

* GDQA variants in groups of their own (``gdqa.placement: own_groups``): one wording per group;
* variants that draw new distractors (``gdqa.distractors``);
* the release's GPG (``gpg: release``): whole-batch dynamic sampling, α on the trained batch scaling the loss;
* a curriculum window that repeats easy questions (``curriculum.window: uniform``).

The spies record, per generation call, the rows TRL generated for (ids, prompt texts, options).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main

G = 4


class Spy:
    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.loss: list[tuple[float, float | None]] = []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    import trl

    s = Spy()
    score = trl.GRPOTrainer._generate_and_score_completions
    loss = trl.GRPOTrainer.compute_loss

    def spy_score(self: Any, inputs: Any) -> Any:
        s.calls.append(
            [{k: row[k] for k in ("id", "prompt_text", "options", "answer_index")} for row in inputs]
        )
        return score(self, inputs)

    def spy_loss(self: Any, model: Any, inputs: Any, *a: Any, **k: Any) -> Any:
        out = loss(self, model, inputs, *a, **k)
        scale = inputs.get("gpg_loss_scale")
        s.loss.append((float(out.detach()), float(scale[0]) if scale is not None else None))
        return out

    monkeypatch.setattr(trl.GRPOTrainer, "_generate_and_score_completions", spy_score)
    monkeypatch.setattr(trl.GRPOTrainer, "compute_loss", spy_loss)
    return s


def _groups(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[k : k + G] for k in range(0, len(rows), G)]


@pytest.mark.slow
def test_own_groups_add_variant_rows_and_keep_one_wording_per_group(
    tmp_path: Path, write_config: Callable[..., Path], spy: Spy
) -> None:
    out = tmp_path / "run"
    cfg = write_config(
        out,
        grpo={"max_steps": 6},
        gdqa={
            "enabled": True,
            "placement": "own_groups",
            "difficulty": "s_q",
            "kinds": ["template", "reorder"],
        },
    )
    assert main(["train", "--config", str(cfg)]) == 0
    summary = json.loads((out / "run_summary.json").read_text(encoding="utf-8"))
    assert "48 questions from" in summary["lines"]["data"] and "GDQA variant rows" in summary["lines"]["data"]
    assert "variant row(s) each" in summary["lines"]["GDQA"]
    groups = [grp for call in spy.calls for grp in _groups(call)]
    assert all(len({m["prompt_text"] for m in grp}) == 1 for grp in groups)  # one wording per group
    assert any("~v" in grp[0]["id"] for grp in groups), "no variant row was drawn; the check proved little"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r.get("gdqa/wordings_per_group", 1.0) == 1.0 for r in rows)


@pytest.mark.slow
def test_own_groups_by_s_q_count_their_variant_rows_as_gdqa_acting(
    tmp_path: Path,
    write_config: Callable[..., Path],
    spy: Spy,
    capsys: pytest.CaptureFixture[str],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    """Under ``s_q`` no group is reworded at rollout: GDQA acts only through the variant rows, so those
    are what the idle warning and the end-of-run line count."""
    out = tmp_path / "run"
    cfg = write_config(
        out,
        data={"limit": 4},
        grpo={"max_steps": 4},
        gdqa={
            "enabled": True,
            "placement": "own_groups",
            "difficulty": "s_q",
            "s_q_quantile": 0.0,
            "variants_per_question": 3,
            "kinds": ["template", "reorder"],
            "idle_warning_steps": 2,
        },
    )
    assert main(["train", "--config", str(cfg)]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert all(r["gdqa/augmented_fraction"] == 0.0 for r in rows)  # nothing reworded at rollout
    drawn = [grp[0]["id"] for call in spy.calls for grp in _groups(call)]
    expected = [sum("~v" in i for i in drawn[k : k + 2]) / 2 for k in range(0, len(drawn), 2)]
    assert [r["gdqa/variant_row_fraction"] for r in rows] == expected
    assert all(f > 0 for f in expected), "a step drew no variant row; the warning check proves little"
    captured = capsys.readouterr()
    assert "GDQA has augmented no group" not in captured.err
    assert "plain GRPO" not in captured.out + captured.err
    assert f"GDQA acted on {100 * sum(expected) / len(expected):.1f} % of groups" in captured.out
    state = json.loads((out / "final" / "anatomy_r1_state.json").read_text(encoding="utf-8"))
    assert state["tracker"]["items"] == {}  # difficulty by S(q) alone reads no group, so none was observed


@pytest.mark.slow
def test_own_groups_reword_a_failed_question_as_a_whole(
    tmp_path: Path, write_config: Callable[..., Path], spy: Spy
) -> None:
    """The random tiny model fails every group, so every question becomes difficult once seen; with four
    questions each comes back every other step, and then its whole group sees one other wording."""
    cfg = write_config(
        tmp_path / "run",
        data={"limit": 4},
        grpo={"max_steps": 4},
        gdqa={
            "enabled": True,
            "placement": "own_groups",
            "difficulty": "failure",
            "kinds": ["template", "reorder"],
        },
    )
    assert main(["train", "--config", str(cfg)]) == 0
    original: dict[str, str] = {}
    reworded = 0
    for call in spy.calls:
        for grp in _groups(call):
            assert len({m["prompt_text"] for m in grp}) == 1
            qid, text = grp[0]["id"], grp[0]["prompt_text"]
            if qid not in original:
                original[qid] = text  # first sight: unseen questions are easy under "failure"
            elif text != original[qid]:
                reworded += 1
    assert reworded > 0


@pytest.mark.slow
def test_variants_with_new_distractors_keep_the_answer_and_are_scored_on_their_options(
    tmp_path: Path, write_config: Callable[..., Path], spy: Spy, tiny_data: Path
) -> None:
    from anatomy_r1.data.io import read_records

    originals = {r.id: r for r in read_records(tiny_data / "train.jsonl")}
    cfg = write_config(
        tmp_path / "run",
        grpo={"max_steps": 2},
        gdqa={
            "enabled": True,
            "s_q_quantile": 0.0,
            "distractors": "same_s_q",
            "kinds": ["template", "reorder"],
        },
    )
    assert main(["train", "--config", str(cfg)]) == 0
    redrawn = 0
    for call in spy.calls:
        for row in call:
            rec = originals[row["id"]]
            assert row["options"][row["answer_index"]] == rec.answer and len(row["options"]) == len(
                rec.options
            )
            for k, opt in enumerate(row["options"]):
                assert f"{'ABCDEFGH'[k]}. {opt}" in row["prompt_text"] or opt in row["prompt_text"]
            if Counter(row["options"]) != Counter(rec.options):
                redrawn += 1
    assert redrawn > 0, "no variant drew new distractors"


def test_release_gpg_is_refused_without_the_settings_it_stands_for(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "run", gpg="release")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "gpg: release needs dynamic_sampling: true" in err and "grpo.loss_type: bnpo" in err
    assert not (tmp_path / "run").exists()


RELEASE = {"gpg": "release", "dynamic_sampling": True}
RELEASE_GRPO = {"loss_type": "bnpo", "scale_rewards": "group", "max_steps": 2}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_model", "warm_model"])
def test_release_gpg_scales_the_whole_loss_by_alpha_of_the_trained_batch(
    model: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    write_config: Callable[..., Path],
    spy: Spy,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    """The random model ties every group (α is guarded to 1); the warmed-up one mostly fills the batch."""
    out = tmp_path / "run"
    path = request.getfixturevalue(model)
    cfg = write_config(out, model={"path": str(path)}, grpo=RELEASE_GRPO, **RELEASE)
    assert main(["train", "--config", str(cfg)]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    for r in rows:
        assert "gpg/alpha" in r and "dapo/batch_replaced" in r and "dapo/refill_rounds" in r
        if r["gpg/all_groups_tied"] == 1.0:
            assert r["gpg/alpha"] == 1.0  # the guard, where the release would scale by 1e8
        if r["dapo/batch_replaced"] == 1.0:
            assert r["gpg/alpha"] == 1.0  # a batch of valid groups only
    assert spy.loss and all(scale is not None for _, scale in spy.loss)
    if model == "tiny_model":
        assert all(r["gpg/all_groups_tied"] == 1.0 for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("window", ["uniform", "fresh"])
def test_a_uniform_curriculum_window_repeats_easy_questions(
    window: str, tmp_path: Path, write_config: Callable[..., Path], spy: Spy
) -> None:
    cfg = write_config(
        tmp_path / "run",
        data={"limit": 16},
        grpo={"max_steps": 6},
        curriculum={"enabled": True, "backend": "matrix:prior", "window": window, "pacing": "linear"},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    drawn = [grp[0]["id"] for call in spy.calls for grp in _groups(call)]
    assert len(drawn) == 12  # 6 steps x 2 groups
    repeats = len(drawn) - len(set(drawn))
    if window == "fresh":
        assert repeats == 0  # a pass of 16 questions never repeats one within 12 draws
    else:
        assert repeats > 0  # memory-less draws from the small early window repeat


@pytest.mark.slow
def test_without_resampling_rounds_release_alpha_reweights_the_loss_by_groups_over_valid_groups(
    tmp_path: Path,
    write_config: Callable[..., Path],
    warm_model: Path,
    spy: Spy,
    monkeypatch: pytest.MonkeyPatch,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    """With no rounds the first batch is trained as generated, as the release with max_resample_times 0:
    α = groups / valid groups, and the loss the optimiser sees is TRL's loss times α."""
    from anatomy_r1.training import gpg_release
    from anatomy_r1.training.dapo import DynamicSamplingMixin

    monkeypatch.setattr(DynamicSamplingMixin, "max_refill_rounds", 0)
    returned: list[float] = []
    original = gpg_release.ReleaseGPGMixin.compute_loss

    def spy_scaled(self: Any, *a: Any, **k: Any) -> Any:
        out = original(self, *a, **k)
        returned.append(float(out.detach()))
        return out

    monkeypatch.setattr(gpg_release.ReleaseGPGMixin, "compute_loss", spy_scaled)
    out = tmp_path / "run"
    grpo = {**RELEASE_GRPO, "max_steps": 4}
    cfg = write_config(out, model={"path": str(warm_model)}, grpo=grpo, **RELEASE)
    assert main(["train", "--config", str(cfg)]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert all(r["dapo/refill_rounds"] == 0 and r["dapo/batch_replaced"] == 0 for r in rows)
    ratios = [r["invalid_gradient_ratio"] for r in rows]
    alphas = [r["gpg/alpha"] for r in rows]
    for ratio, alpha, tied in zip(ratios, alphas, (r["gpg/all_groups_tied"] for r in rows), strict=True):
        assert alpha == pytest.approx(1.0 if tied else 1.0 / (1.0 - ratio))
    assert any(a > 1.0 for a in alphas), "every batch was all valid; the scaling went untested"
    assert len(returned) == len(spy.loss)
    for (unscaled, scale), scaled in zip(spy.loss, returned, strict=True):
        assert scale is not None and scaled == pytest.approx(unscaled * scale, rel=1e-5, abs=1e-8)
