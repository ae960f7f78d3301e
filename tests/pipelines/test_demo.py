"""``anatomy-r1 demo``: config assembly, the output-folder guard, and (slow) the whole run end to end."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import pytest

from anatomy_r1.cli import build_parser, main
from anatomy_r1.errors import ConfigError
from anatomy_r1.pipelines import demo
from anatomy_r1.pipelines.demo import MARKER, DemoOptions, demo_config, run_demo
from anatomy_r1.reports.report_summary import FIGURES, REQUIRED_KEYS


def test_packaged_config_gets_demo_paths(tmp_path: Path) -> None:
    cfg = demo_config(DemoOptions(), tmp_path)
    assert cfg.method == "grpo"
    assert cfg.data.train == str(tmp_path / "data" / "train.jsonl")
    assert cfg.data.image_root == str(tmp_path / "data")
    assert cfg.output_dir == str(tmp_path / "run")


def test_quick_then_user_overrides_then_seed(tmp_path: Path) -> None:
    cfg = demo_config(DemoOptions(quick=True, overrides=["grpo.max_steps=2"], seed=7), tmp_path)
    assert cfg.grpo["max_steps"] == 2  # the user's --set wins over --quick
    assert cfg.grpo["num_generations"] == 4
    assert cfg.seed == 7


def test_config_file_and_its_errors(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("template: compact_text\ngrpo:\n  max_steps: 3\n", encoding="utf-8")
    cfg = demo_config(DemoOptions(config=str(f)), tmp_path / "out")
    assert cfg.grpo["max_steps"] == 3 and cfg.template == "compact_text"
    with pytest.raises(ConfigError, match="no such config"):
        demo_config(DemoOptions(config=str(tmp_path / "nope.yaml")), tmp_path)
    with pytest.raises(ConfigError, match="grpo"):
        demo_config(DemoOptions(overrides=["grpo.no_such_knob=1"]), tmp_path)
    with pytest.raises(ConfigError, match="unknown builtin"):
        demo_config(DemoOptions(overrides=["model.path=builtin:huge"]), tmp_path)
    with pytest.raises(ConfigError, match="not a local model"):
        demo_config(DemoOptions(overrides=[f"model.path={tmp_path}"]), tmp_path)
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    assert demo_config(DemoOptions(overrides=[f"model.path={tmp_path}"]), tmp_path).model.path == str(
        tmp_path
    )
    f.write_text("method: sft\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="GRPO"):
        demo_config(DemoOptions(config=str(f)), tmp_path)


def test_bad_options_fail_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError):
        run_demo(DemoOptions(out=out, overrides=["grpo.typo=1"]))
    with pytest.raises(ConfigError, match="--n-test"):
        run_demo(DemoOptions(out=out, n_test=0))
    with pytest.raises(ConfigError, match="--k"):
        run_demo(DemoOptions(out=out, k=-1))
    assert not out.exists()


def test_existing_output_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    demo._prepare_out(out, force=False)
    assert (out / MARKER).is_file()
    (out / "report").mkdir()
    with pytest.raises(ConfigError, match="--force"):
        demo._prepare_out(out, force=False)
    demo._prepare_out(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]


def test_force_never_clears_an_unrelated_folder(tmp_path: Path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="not written by"):
        demo._prepare_out(precious, force=True)
    assert (precious / "thesis.tex").is_file()
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a directory"):
        demo._prepare_out(tmp_path / "file", force=True)


def test_cli_parses_demo_options() -> None:
    args = build_parser().parse_args(
        ["demo", "--out", "o", "--quick", "--set", "a.b=1", "--set", "c=2", "--n-train", "5", "--k", "2"]
    )
    assert args.command == "demo" and args.quick and args.out == "o"
    assert args.overrides == ["a.b=1", "c=2"] and args.n_train == 5 and args.k == 2
    assert args.n_test is None and args.seed is None and not args.force


def test_cli_reports_config_errors_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["demo", "--out", str(tmp_path / "o"), "--set", "grpo.typo=1"])
    assert rc == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_demo_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import anatomy_r1.pipelines.base_model as base

    monkeypatch.setenv("ANATOMY_R1_CACHE", str(tmp_path / "cache"))
    # a much smaller warm-up than the library's base model: this test checks plumbing, not learning
    small = functools.partial(
        base.BaseRecipe, n_perception=64, n_corpus_questions=64, sft_steps=4, batch_size=8
    )
    monkeypatch.setattr(base, "BaseRecipe", small)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    for i in range(1, demo.N_STEPS + 1):
        assert f"[{i}/{demo.N_STEPS}]" in stdout
    assert re.search(
        r"base accuracy \d+\.\d% -> trained accuracy \d+\.\d% \(gain [+-]\d+\.\d points\) "
        r"on 40 held-out questions",
        stdout,
    )
    report = out / "report"
    assert f"report: {report / 'report.md'}" in stdout
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    for key in REQUIRED_KEYS:
        assert key in metrics
    assert metrics["n_test"] == 40
    assert 0.0 <= metrics["base_accuracy"] <= 1.0 and 0.0 <= metrics["trained_accuracy"] <= 1.0
    assert metrics["training"]["last_step"] == 4
    assert set(metrics["timings"]) >= {"synthesize benchmark", "train with GRPO", "evaluate trained model"}
    assert metrics["machine"]["cpu_count"] == os.cpu_count()
    assert metrics["machine"]["torch_threads"] >= 1
    assert "Measured on: " in (report / "report.md").read_text(encoding="utf-8")
    for name in FIGURES.values():
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "eval" / "base" / "metrics.json").is_file()
    assert (out / "eval" / "trained" / "metrics.json").is_file()
    assert (out / "run" / "final" / "config.json").is_file()
    # the premise check ran on the trained model and its headline numbers reached the report
    probe = json.loads((out / "probe" / "probe.json").read_text(encoding="utf-8"))
    assert probe["n_questions"] == 40 and probe["oracle"] is not None
    assert metrics["probe"]["gap_points"] == pytest.approx(probe["gap"]["avg_at_k"]["points"])
    assert metrics["probe"]["spearman_s_q"] == probe["s_q_vs_accuracy"]["spearman_avg_at_k"]
    assert metrics["probe"]["oracle_gap_points"] > 0  # the world itself makes similar choices harder
    assert "Are similar choices harder?" in (report / "report.md").read_text(encoding="utf-8")

    # the questions as given are scored from the evaluation step's completions, not generated again
    def rows(path: Path) -> list[tuple[str, str, str]]:
        lines = path.read_text(encoding="utf-8").splitlines()
        return sorted((r["id"], r["kind"], r["completion"]) for r in map(json.loads, lines))

    evaluated = rows(out / "eval" / "trained" / "completions.jsonl")
    probed = [
        (r["id"], r["kind"], r["completion"])
        for r in map(json.loads, (out / "probe" / "completions.jsonl").read_text("utf-8").splitlines())
        if r["set"] == "original"
    ]
    assert sorted(probed) == evaluated
    # a second run into the same folder is refused, not mixed in
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
