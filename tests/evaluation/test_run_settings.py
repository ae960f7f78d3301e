"""``eval`` and ``probe`` take the template, completion length and dtype of the run that trained the model.

The run folders are built the way training leaves them: the SFT-warmed tiny model copied into
``<run>/final`` with its record written by ``task.run_info.write_run_info``, and for older runs a
``config.yaml`` next to ``final/``. Generation is real; a spy around ``generate_with_model`` records what
each command handed it, and the JSON outputs must say the same, with where each value came from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from anatomy_r1.cli import main
from anatomy_r1.data.io import read_records, write_records
from anatomy_r1.data.vocab import SYNTH_CLASSES
from anatomy_r1.errors import DataError
from anatomy_r1.evaluation.run_settings import DEFAULTS, resolve_run_settings
from anatomy_r1.task.run_info import RUN_INFO_FILE, read_run_info, write_run_info

RUN_LENGTH = 5
"""The run's max_completion_length: far from eval's default of 1024, so a fallback cannot pass for it."""


@pytest.fixture
def spy_generate(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records the keyword arguments of every ``generate_with_model`` call and the model's dtype."""
    import anatomy_r1.evaluation.generate as gen

    calls: list[dict[str, Any]] = []
    original = gen.generate_with_model

    def spy(model, processor, records, **kwargs):
        calls.append({**kwargs, "model_dtype": str(next(model.parameters()).dtype), "n": len(records)})
        return original(model, processor, records, **kwargs)

    monkeypatch.setattr(gen, "generate_with_model", spy)
    return calls


def _run_folder(
    root: Path, model: Path, *, length: int | None = RUN_LENGTH, dtype: str = "fp32", name: str = "short"
) -> Path:
    """``root/final``: the model with a run record as ``save_final`` writes it; returns ``final``."""
    final = root / "final"
    shutil.copytree(model, final)
    (final / RUN_INFO_FILE).unlink(missing_ok=True)
    write_run_info(
        final,
        name=name,
        method="grpo",
        template="compact_text",
        dtype=dtype,
        base_model=str(model),
        max_completion_length=length,
    )
    return final


def _eval(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(
        ["eval", "--model", str(model), "--data", str(data), "--out", str(out),
         "--k", "1", "--greedy", "--limit", "4", "--no-progress", *extra]
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ run record


def test_the_run_record_carries_the_completion_length(tmp_path: Path) -> None:
    rec = write_run_info(
        tmp_path, name="r", method="grpo", template="compact_text", dtype="bf16", base_model="/m",
        max_completion_length=24,
    )  # fmt: skip
    assert json.loads(rec.read_text())["max_completion_length"] == 24
    info = read_run_info(tmp_path)
    assert info is not None and info.max_completion_length == 24 and info.max_completion_length_source == rec

    # left out when the run generated nothing (SFT), so readers fall back instead of trusting a made-up value
    write_run_info(tmp_path, name="r", method="sft", template="compact", dtype="fp32", base_model="/m")
    assert "max_completion_length" not in json.loads(rec.read_text())
    info = read_run_info(tmp_path)
    assert info is not None and info.max_completion_length is None

    with pytest.raises(ValueError, match="positive integer"):
        write_run_info(tmp_path, name="r", method="grpo", template="t", dtype="fp32", base_model="/m",
                       max_completion_length=0)  # fmt: skip


@pytest.mark.parametrize("bad", [0, -3, "24", 2.5, True])
def test_a_bad_completion_length_in_a_run_record_is_a_clear_error(tmp_path: Path, bad: Any) -> None:
    (tmp_path / RUN_INFO_FILE).write_text(
        json.dumps({"name": "r", "template": "compact_text", "max_completion_length": bad})
    )
    with pytest.raises(DataError, match=rf"{RUN_INFO_FILE}: 'max_completion_length' must be a positive"):
        read_run_info(tmp_path)


def test_an_older_record_takes_the_length_from_its_runs_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    write_run_info(
        run / "final", name="old", method="grpo", template="compact", dtype="fp32", base_model="/m"
    )
    cfg = {"name": "old", "method": "grpo", "template": "compact", "grpo": {"max_completion_length": 48}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    info = read_run_info(run / "final")
    assert info is not None and info.source == run / "final" / RUN_INFO_FILE
    assert info.max_completion_length == 48 and info.max_completion_length_source == run / "config.yaml"

    # another run's config beside a copied model folder is not this run's
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "name": "other"}))
    info = read_run_info(run / "final")
    assert info is not None and info.max_completion_length is None

    # a config without the length: nothing to take
    (run / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "grpo"}))
    assert read_run_info(run / "final").max_completion_length is None  # type: ignore[union-attr]

    # a run saved before the record existed: everything from config.yaml
    (run / "final" / RUN_INFO_FILE).unlink()
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    info = read_run_info(run / "final")
    assert info is not None and info.template == "compact" and info.max_completion_length == 48


def test_resolution_order_flag_then_run_then_default(tiny_model: Path, tmp_path: Path) -> None:
    final = _run_folder(tmp_path / "run", tiny_model, dtype="bf16")
    record = str(final / RUN_INFO_FILE)
    r = resolve_run_settings(final, {})
    assert r.as_json() == {
        "template": {"value": "compact_text", "from": "run", "file": record},
        "max_new_tokens": {"value": RUN_LENGTH, "from": "run", "file": record},
        "dtype": {"value": "bf16", "from": "run", "file": record},
    }
    assert r.warnings == []
    # an alias of the run's dtype is the same precision: no warning
    same = resolve_run_settings(final, {"dtype": "bfloat16", "max_new_tokens": RUN_LENGTH})
    assert same.value("dtype") == "bf16" and same.warnings == []
    assert same.settings["max_new_tokens"].origin == "flag"
    # a model of no run keeps the commands' defaults and says so
    base = resolve_run_settings(tiny_model, {"template": "compact"})
    assert base.run is None and base.warnings == []
    assert base.as_json() == {
        "template": {"value": "compact", "from": "flag"},
        "max_new_tokens": {"value": DEFAULTS["max_new_tokens"], "from": "default"},
        "dtype": {"value": "fp32", "from": "default"},
    }


# ------------------------------------------------------------------------------------------------- eval


def test_eval_without_flags_uses_the_runs_length_template_and_dtype(
    warm_model: Path, tiny_data: Path, tmp_path: Path, spy_generate: list[dict[str, Any]], capsys
) -> None:
    final = _run_folder(tmp_path / "run", warm_model, dtype="bf16")
    out = tmp_path / "eval"
    assert _eval(final, tiny_data / "warm.jsonl", out) == 0
    assert "warning" not in capsys.readouterr().err
    assert {c["max_new_tokens"] for c in spy_generate} == {RUN_LENGTH}  # not eval's default, 1024
    assert {c["template"] for c in spy_generate} == {"compact_text"}  # not the fallback, anatomy_r1
    assert {c["model_dtype"] for c in spy_generate} == {"torch.bfloat16"}

    metrics = json.loads((out / "metrics.json").read_text())
    record = str(final / RUN_INFO_FILE)
    st = metrics["settings"]
    assert st["template"] == {"value": "compact_text", "from": "run", "file": record}
    assert st["max_new_tokens"] == {"value": RUN_LENGTH, "from": "run", "file": record}
    assert st["dtype"] == {"value": "bf16", "from": "run", "file": record}
    assert st["model"] == str(final) and st["k"] == 1 and st["greedy"] is True and st["limit"] == 4
    assert metrics["n"] == 4
    md = (out / "metrics.md").read_text()
    assert "## Settings" in md and f"| max_new_tokens | {RUN_LENGTH} | run |" in md


def test_eval_flags_that_differ_from_the_run_win_with_a_warning(
    warm_model: Path, tiny_data: Path, tmp_path: Path, spy_generate: list[dict[str, Any]], capsys
) -> None:
    final = _run_folder(tmp_path / "run", warm_model)
    out = tmp_path / "eval"
    assert _eval(final, tiny_data / "warm.jsonl", out, "--max-new-tokens", "3", "--template", "compact") == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2, err
    assert any(
        "--max-new-tokens 3 differs" in w and f"({RUN_LENGTH}, from {final / RUN_INFO_FILE})" in w
        for w in warnings
    )
    assert any("--template compact differs" in w and "compact_text" in w for w in warnings)
    assert {c["max_new_tokens"] for c in spy_generate} == {3}
    assert {c["template"] for c in spy_generate} == {"compact"}
    st = json.loads((out / "metrics.json").read_text())["settings"]
    record = str(final / RUN_INFO_FILE)
    assert st["max_new_tokens"] == {"value": 3, "from": "flag", "file": record, "run_value": RUN_LENGTH}
    assert st["template"] == {"value": "compact", "from": "flag", "file": record, "run_value": "compact_text"}
    assert st["dtype"] == {"value": "fp32", "from": "run", "file": record}

    # the same values given explicitly are no cause for a warning
    again = tmp_path / "again"
    assert (
        _eval(final, tiny_data / "warm.jsonl", again, "--max-new-tokens", str(RUN_LENGTH), "--dtype", "fp32")
        == 0
    )
    assert "warning" not in capsys.readouterr().err


def test_eval_of_an_older_run_takes_the_length_from_its_config(
    warm_model: Path, tiny_data: Path, tmp_path: Path, spy_generate: list[dict[str, Any]], capsys
) -> None:
    run = tmp_path / "run"
    final = _run_folder(run, warm_model, length=None, name="older")
    (run / "config.yaml").write_text(
        yaml.safe_dump({"name": "older", "method": "grpo", "template": "compact_text",
                        "grpo": {"max_completion_length": 6}})
    )  # fmt: skip
    assert _eval(final, tiny_data / "warm.jsonl", tmp_path / "eval") == 0
    assert {c["max_new_tokens"] for c in spy_generate} == {6}
    st = json.loads((tmp_path / "eval" / "metrics.json").read_text())["settings"]
    assert st["max_new_tokens"] == {"value": 6, "from": "run", "file": str(run / "config.yaml")}
    assert st["template"]["file"] == str(final / RUN_INFO_FILE)
    assert "warning" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ probe


def _probe(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(
        ["probe", "--model", str(model), "--data", str(data), "--out", str(out), "--backend", "matrix:prior",
         "--vocabulary", ",".join(SYNTH_CLASSES), "--k", "1", "--batch-size", "8", *extra]
    )  # fmt: skip


@pytest.fixture
def small_synth(tiny_data: Path) -> Path:
    """Four synthetic questions next to their frames (the default image root is the file's folder)."""
    path = tiny_data / "probe_small.jsonl"
    if not path.exists():
        write_records(path, read_records(tiny_data / "warm.jsonl")[:4])
    return path


def test_probe_without_flags_uses_the_runs_template_and_length(
    warm_model: Path, small_synth: Path, tmp_path: Path, spy_generate: list[dict[str, Any]], capsys
) -> None:
    final = _run_folder(tmp_path / "run", warm_model)
    out = tmp_path / "probe"
    assert _probe(final, small_synth, out) == 0
    assert "warning" not in capsys.readouterr().err
    assert len(spy_generate) == 1 and spy_generate[0]["n"] == 4 * 3  # originals, easiest and hardest
    assert spy_generate[0]["template"] == "compact_text"  # probe's old default was anatomy_r1
    assert spy_generate[0]["max_new_tokens"] == RUN_LENGTH  # and 1024
    res = json.loads((out / "probe.json").read_text())
    record = str(final / RUN_INFO_FILE)
    assert res["settings"]["template"] == {"value": "compact_text", "from": "run", "file": record}
    assert res["settings"]["max_new_tokens"] == {"value": RUN_LENGTH, "from": "run", "file": record}
    assert res["settings"]["dtype"] == {"value": "fp32", "from": "run", "file": record}
    assert "| template | compact_text (from run) |" in (out / "probe.md").read_text()


def test_probe_template_that_differs_from_the_run_warns(
    warm_model: Path, small_synth: Path, tmp_path: Path, spy_generate: list[dict[str, Any]], capsys
) -> None:
    final = _run_folder(tmp_path / "run", warm_model)
    out = tmp_path / "probe"
    assert _probe(final, small_synth, out, "--template", "anatomy_r1", "--max-new-tokens", "4") == 0
    err = capsys.readouterr().err
    assert "warning: --template anatomy_r1 differs from the template the model was trained with" in err
    assert "warning: --max-new-tokens 4 differs" in err and str(final / RUN_INFO_FILE) in err
    assert spy_generate[0]["template"] == "anatomy_r1" and spy_generate[0]["max_new_tokens"] == 4
    st = json.loads((out / "probe.json").read_text())["settings"]
    assert st["template"]["from"] == "flag" and st["template"]["run_value"] == "compact_text"
    assert st["max_new_tokens"] == {
        "value": 4, "from": "flag", "file": str(final / RUN_INFO_FILE), "run_value": RUN_LENGTH
    }  # fmt: skip


def test_eval_and_probe_take_the_dtype_names_the_model_loader_takes(
    warm_model: Path, small_synth: Path, tmp_path: Path, spy_generate: list[dict[str, Any]], capsys
) -> None:
    final = _run_folder(tmp_path / "run", warm_model, dtype="bf16")
    out = tmp_path / "eval"
    assert _eval(final, small_synth, out, "--dtype", "bfloat16") == 0
    assert "warning" not in capsys.readouterr().err  # the run's own precision, by its long name
    assert {c["model_dtype"] for c in spy_generate} == {"torch.bfloat16"}
    assert json.loads((out / "metrics.json").read_text())["settings"]["dtype"]["value"] == "bf16"

    errors = []
    for command, out in ((_eval, tmp_path / "e"), (_probe, tmp_path / "p")):
        rc = command(final, small_synth, out, "--dtype", "half")
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, err
        errors.append(err[0])
    assert errors[0] == errors[1] and errors[0].startswith("error: unknown --dtype 'half'; choose one")
    assert not (tmp_path / "e").exists() and not (tmp_path / "p").exists()


def test_probe_refuses_a_broken_run_record_before_reading_data(
    tiny_model: Path, tmp_path: Path, capsys
) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    (model / RUN_INFO_FILE).write_text(json.dumps({"template": "compact", "max_completion_length": "long"}))
    rc = main(["probe", "--model", str(model), "--data", str(tmp_path / "missing.jsonl"),
               "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "max_completion_length" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_eval_of_a_trained_grpo_run_uses_its_completion_length(
    write_config, tiny_data: Path, tmp_path: Path, spy_generate: list[dict[str, Any]], capsys
) -> None:
    """The whole chain: ``anatomy-r1 train`` writes the run, ``eval`` with no flags reads it back.

    The length is found in the run record, or in the run's ``config.yaml`` beside ``final/``, whichever
    training wrote; either way it is the run's and no fallback.
    """
    run = tmp_path / "grpo"
    cfg = write_config(run, grpo={"max_steps": 1, "max_completion_length": 7})
    assert main(["train", "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert _eval(run / "final", tiny_data / "warm.jsonl", tmp_path / "eval") == 0
    assert "warning" not in capsys.readouterr().err
    assert {c["max_new_tokens"] for c in spy_generate} == {7}
    assert {c["template"] for c in spy_generate} == {"compact_text"}
    st = json.loads((tmp_path / "eval" / "metrics.json").read_text())["settings"]
    assert (st["max_new_tokens"]["value"], st["max_new_tokens"]["from"]) == (7, "run")
    assert st["max_new_tokens"]["file"] in (str(run / "final" / RUN_INFO_FILE), str(run / "config.yaml"))
