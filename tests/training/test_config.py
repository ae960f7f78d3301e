"""Experiment configs: YAML loading, strict keys, ``--set`` typing, and how errors reach the command line.

A typo in a key must fail before any model is loaded, with a message naming the key; these tests run in
milliseconds and import no training code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anatomy_r1.cli import main
from anatomy_r1.errors import AnatomyR1Error, ConfigError
from anatomy_r1.training.config import TrainConfig, apply_overrides, dump_config, load_config


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_yaml_sections_are_loaded(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        """
name: exp1
method: sft
template: compact_text
model: {path: /models/x, dtype: bf16, lora: {r: 8}}
data: {train: a.jsonl, limit: 10}
grpo: {num_generations: 4, beta: 0.04}
curriculum: {enabled: true, backend: "matrix:prior", pacing: root}
gdqa: {enabled: true, kinds: [reorder]}
""",
    )
    cfg = load_config(p)
    assert (cfg.name, cfg.method, cfg.template) == ("exp1", "sft", "compact_text")
    assert cfg.model.dtype == "bf16" and cfg.model.lora == {"r": 8}
    assert cfg.data.limit == 10
    assert cfg.grpo.num_generations == 4 and cfg.grpo.beta == pytest.approx(0.04)
    assert cfg.curriculum.enabled and cfg.curriculum.backend == "matrix:prior"
    assert cfg.gdqa.kinds == ["reorder"]
    assert cfg.grpo.per_device_train_batch_size == TrainConfig().grpo.per_device_train_batch_size


def test_empty_file_and_none_path_give_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "")) == TrainConfig()
    assert load_config(None) == TrainConfig()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("grpo: {lerning_rate: 0.1}", "grpo.lerning_rate"),
        ("epochs: 3", "epochs"),
        ("curriculum: {enabled: true, pace: linear}", "curriculum.pace"),
    ],
)
def test_unknown_keys_are_refused_by_name(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    assert named in str(e.value)
    assert "c.yaml" in str(e.value)


def test_unknown_key_through_set_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"grpo\.max_stepz"):
        load_config(None, ["grpo.max_stepz=3"])


def test_set_values_are_yaml_typed() -> None:
    cfg = load_config(
        None,
        [
            "grpo.beta=0.04",
            "grpo.max_steps=10",
            "curriculum.enabled=true",
            "gdqa.kinds=[template, reorder]",
            "model.lora={r: 8, alpha: 16}",
            "grpo.extra={vllm_server_base_url: 'http://h:8000'}",
            "name=run-a",
            "data.eval=",
        ],
    )
    assert isinstance(cfg.grpo.beta, float) and cfg.grpo.beta == pytest.approx(0.04)
    assert isinstance(cfg.grpo.max_steps, int) and cfg.grpo.max_steps == 10
    assert cfg.curriculum.enabled is True
    assert cfg.gdqa.kinds == ["template", "reorder"]
    assert cfg.model.lora == {"r": 8, "alpha": 16}
    assert cfg.grpo.extra == {"vllm_server_base_url": "http://h:8000"}
    assert cfg.name == "run-a"
    assert cfg.data.eval == ""


def test_set_overrides_the_file_and_later_set_wins(tmp_path: Path) -> None:
    p = _write(tmp_path, "grpo: {max_steps: 5, beta: 0.1}")
    cfg = load_config(p, ["grpo.max_steps=7", "grpo.max_steps=9"])
    assert cfg.grpo.max_steps == 9 and cfg.grpo.beta == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grpo.max_steps", "expected KEY=VALUE"),
        ("name.sub=1", "name"),
        ("grpo.max_steps=many", "grpo.max_steps"),
        ("method=ppo", "method"),
        ("model.dtype=int4", "model.dtype"),
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "grpo: {max_steps: [1, 2"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_config_error_is_a_user_error() -> None:
    assert issubclass(ConfigError, AnatomyR1Error)


def test_dump_and_reload_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["grpo.beta=0.02", "gdqa.enabled=true", "model.lora={r: 4}"])
    dump_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["grpo"]["beta"] == pytest.approx(0.02)


def test_apply_overrides_creates_sections() -> None:
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


# ----------------------------------------------------------------------------- the command line


def test_cli_config_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "grpo: {lerning_rate: 0.1}\ndata: {train: x.jsonl}\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "grpo.lerning_rate" in err

    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err

    assert main(["train", "--config", str(bad), "--set", "grpo.max_steps"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_cli_requires_existing_training_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, f"output_dir: {tmp_path / 'run'}\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "data.train is not set" in capsys.readouterr().err
    assert main(["sft", "--config", str(cfg), "--set", f"data.train={tmp_path / 'x.jsonl'}"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_train_module_imports_no_training_stack() -> None:
    """Parsing arguments and validating a config must not pay for importing torch/transformers/trl."""
    code = (
        "import sys, anatomy_r1.cli.train as t; "
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_summary_reads_last_reward_and_accuracy(tmp_path: Path) -> None:
    from anatomy_r1.cli.train import summarize_metrics

    p = tmp_path / "metrics.jsonl"
    p.write_text(
        '{"step": 1, "reward": 0.5, "rewards/accuracy_reward/mean": 0.25}\n'
        '{"step": 2, "reward": 0.75, "rewards/accuracy_reward/mean": 0.5}\n'
        '{"step": 2, "train_runtime": 3.0}\n',
        encoding="utf-8",
    )
    assert summarize_metrics(p) == {"step": 2, "reward": 0.75, "accuracy": 0.5, "loss": None}
    assert summarize_metrics(tmp_path / "absent.jsonl")["step"] is None


def test_set_below_a_scalar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'name' is not a section"):
        load_config(_write(tmp_path, "name: x\n"), ["name.sub=1"])
