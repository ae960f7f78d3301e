"""Where a run reports to: ``logging.report_to`` goes to TRL unchanged (none by default), and
``grpo.log_completions`` reaches TRL, which then writes the sampled completions of each logged step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import load_config


def test_report_to_has_one_home_and_defaults_to_none() -> None:
    from anatomy_r1.training.args import grpo_args

    def report_to(*overrides: str) -> list[str]:
        return grpo_args(load_config(None, list(overrides)), "out").report_to

    assert report_to() == []
    assert report_to("logging.report_to=[tensorboard]") == report_to("logging.report_to=tensorboard")
    assert report_to("logging.report_to=tensorboard") == ["tensorboard"]
    with pytest.raises(ConfigError, match=r"grpo\.report_to is set by logging\.report_to"):
        load_config(None, ["grpo.report_to=wandb"])
    with pytest.raises(ConfigError, match=r"logging\.tensorboard.*replaced by report_to: \[tensorboard\]"):
        load_config(None, ["logging.tensorboard=true"])


def test_unknown_tracker_is_refused_before_anything_is_written(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    cfg = write_config(out, logging={"report_to": ["tensorbored"]})
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: logging.report_to: 'tensorbored' is not a tracker") and "wandb" in err
    assert not out.exists()


def test_log_completions_reaches_trl() -> None:
    from anatomy_r1.training.args import grpo_args

    assert grpo_args(load_config(None), "out").log_completions is False  # TRL's default
    assert grpo_args(load_config(None, ["grpo.log_completions=true"]), "out").log_completions is True


@pytest.mark.slow
def test_tensorboard_and_completions_are_written(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    import pandas as pd

    out = tmp_path / "run"
    cfg = write_config(
        out,
        grpo={"max_steps": 1, "log_completions": True, "num_completions_to_print": 1},
        logging={"report_to": ["tensorboard"], "logging_steps": 1},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    assert list(out.rglob("events.out.tfevents.*")), "no TensorBoard event file"
    (table,) = sorted((out / "completions").glob("completions_*.parquet"))
    df = pd.read_parquet(table)
    assert len(df) == 8  # one generation batch: 2 questions x 4 rollouts
    assert {"prompt", "completion", "advantage", "accuracy_reward", "format_reward"} <= set(df.columns)
    assert (df["step"] == 1).all()
