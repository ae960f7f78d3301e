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
    assert cfg.model.dtype == "bf16" and cfg.model.lora is not None and cfg.model.lora.r == 8
    assert cfg.data.limit == 10
    assert cfg.grpo == {"num_generations": 4, "beta": pytest.approx(0.04)}
    assert cfg.curriculum.enabled and cfg.curriculum.backend == "matrix:prior"
    assert cfg.gdqa.kinds == ["reorder"]
    assert "per_device_train_batch_size" not in cfg.grpo  # TRL's default applies, nothing restated


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
            "model.lora={r: 8, lora_alpha: 16}",
            "grpo.vllm_server_base_url=http://h:8000",
            "name=run-a",
            "data.eval=",
        ],
    )
    assert isinstance(cfg.grpo["beta"], float) and cfg.grpo["beta"] == pytest.approx(0.04)
    assert isinstance(cfg.grpo["max_steps"], int) and cfg.grpo["max_steps"] == 10
    assert cfg.curriculum.enabled is True
    assert cfg.gdqa.kinds == ["template", "reorder"]
    assert cfg.model.lora is not None and (cfg.model.lora.r, cfg.model.lora.lora_alpha) == (8, 16)
    assert cfg.grpo["vllm_server_base_url"] == "http://h:8000"
    assert cfg.name == "run-a"
    assert cfg.data.eval == ""


def test_set_overrides_the_file_and_later_set_wins(tmp_path: Path) -> None:
    p = _write(tmp_path, "grpo: {max_steps: 5, beta: 0.1}")
    cfg = load_config(p, ["grpo.max_steps=7", "grpo.max_steps=9"])
    assert cfg.grpo["max_steps"] == 9 and cfg.grpo["beta"] == pytest.approx(0.1)


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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["gdqa.enabled=true", "gdqa.kinds=[]"], "nothing to vary"),
        (["gdqa.kinds=[confusion]"], "gdqa.kinds"),
        (["gdqa.keep_original_first=false"], "keep_original_first"),
    ],
)
def test_gdqa_options_that_could_not_take_effect_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
    load_config(
        None, ["gdqa.enabled=true", "gdqa.kinds=[]", "gdqa.variants_file=v.jsonl"]
    )  # a file alone is fine


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
    assert summarize_metrics(p) == {"step": 2, "reward": 0.75, "accuracy": 0.5, "loss": None, "gdqa": []}
    assert summarize_metrics(tmp_path / "absent.jsonl")["step"] is None


def test_set_below_a_scalar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'name' is not a section"):
        load_config(_write(tmp_path, "name: x\n"), ["name.sub=1"])


def test_grpo_unknown_key_names_the_closest_trl_field() -> None:
    with pytest.raises(
        ConfigError,
        match=r"grpo\.lerning_rate is not a field of trl\.GRPOConfig; did you mean 'learning_rate'",
    ):
        load_config(None, ["grpo.lerning_rate=0.1"])


@pytest.mark.parametrize(
    ("key", "owner"), [("seed", "seed"), ("output_dir", "output_dir"), ("bf16", "model.dtype")]
)
def test_grpo_keys_owned_by_other_sections_are_refused(key: str, owner: str) -> None:
    with pytest.raises(ConfigError, match=rf"grpo\.{key} is set by {owner}"):
        load_config(None, [f"grpo.{key}=1"])


def test_grpo_section_is_checked_without_importing_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from anatomy_r1.training.config import load_config\n"
        "from anatomy_r1.errors import ConfigError\n"
        "try:\n    load_config(None, ['grpo.num_generatons=4'])\n"
        "except ConfigError as e:\n    print(e)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "did you mean 'num_generations'" in out
    assert out.strip().endswith("False")


def test_grpo_field_list_matches_the_installed_trl() -> None:
    import dataclasses

    from trl import GRPOConfig

    from anatomy_r1.training.trl_fields import NO_DEFAULT, grpo_config_fields

    fields = grpo_config_fields()
    real = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    assert set(fields) == set(real)
    for name, default in fields.items():
        if default is not NO_DEFAULT:
            assert default == real[name].default, name


def test_grpo_section_reaches_trl_unchanged_and_trl_defaults_fill_the_rest() -> None:
    from trl import GRPOConfig

    from anatomy_r1.training.args import grpo_args

    cfg = load_config(None, ["grpo.beta=0.04", "grpo.top_k=7", "grpo.max_steps=3"])
    args = grpo_args(cfg, "out")
    assert (args.beta, args.top_k, args.max_steps) == (pytest.approx(0.04), 7, 3)
    assert args.loss_type == GRPOConfig(output_dir="x", use_cpu=True).loss_type
    assert cfg.grpo_setting("loss_type") == args.loss_type
    assert cfg.grpo_setting("max_steps") == 3
